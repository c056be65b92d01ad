"""The same protections implemented inside a FastAPI application, the way the FastAPI security
guides do it: RS256 JWT verification with PyJWT (issuer, audience, expiry), an RBAC dependency,
a slowapi rate limit per subject (in memory, high enough never to refuse during the run), CORS
middleware and a security-header middleware. The app answers itself (no proxy hop), with the
same JSON body as the benchmark upstream.

Run: BENCH_JWKS=jwks.json uvicorn app:app --workers 2
"""

import json
import os

import jwt
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from slowapi import Limiter, _rate_limit_exceeded_handler
from slowapi.errors import RateLimitExceeded
from slowapi.util import get_remote_address

with open(os.environ["BENCH_JWKS"], encoding="utf-8") as f:
    KEYS = {k["kid"]: jwt.PyJWK(k).key for k in json.load(f)["keys"]}

ISSUER = "https://idp.bench.local"
AUDIENCE = "agents-api"


def identity(request: Request) -> dict:
    header = request.headers.get("authorization", "")
    if not header.startswith("Bearer "):
        raise HTTPException(status_code=401, detail="missing token")
    token = header[7:]
    try:
        kid = jwt.get_unverified_header(token).get("kid")
        claims = jwt.decode(
            token,
            KEYS[kid],
            algorithms=["RS256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "sub", "iss", "aud"]},
        )
    except (jwt.PyJWTError, KeyError) as exc:
        raise HTTPException(status_code=401, detail="invalid token") from exc
    request.state.subject = claims["sub"]
    return claims


def require_role(role: str):
    def check(claims: dict = Depends(identity)) -> dict:
        if role not in claims.get("roles", []):
            raise HTTPException(status_code=403, detail="forbidden")
        return claims

    return check


def subject_key(request: Request) -> str:
    return getattr(request.state, "subject", None) or get_remote_address(request)


limiter = Limiter(key_func=subject_key, headers_enabled=True)
app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
app.state.limiter = limiter
app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)
app.add_middleware(
    CORSMiddleware,
    allow_origins=["https://app.example.com"],
    allow_methods=["GET"],
    allow_headers=["authorization", "content-type"],
)


@app.middleware("http")
async def security_headers(request: Request, call_next):
    response = await call_next(request)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = "default-src 'none'; frame-ancestors 'none'"
    response.headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@app.get("/api/v1/agents/{agent_id}")
@limiter.limit("1000000000/minute")
async def get_agent(
    request: Request,
    response: Response,  # slowapi writes its rate-limit headers here
    agent_id: str,
    claims: dict = Depends(require_role("viewer")),
):
    return {"id": agent_id, "status": "ok", "items": [1, 2, 3]}
