"""Independent verification for interop tests: PyJWT checks a token against a JWKS file.

Usage: python3 pyjwt_verify.py JWKS_FILE TOKEN ISSUER AUDIENCE   (exit 0 and prints sub if valid)
"""
import json
import sys

import jwt

jwks_file, token, issuer, audience = sys.argv[1:5]
with open(jwks_file) as handle:
    keys = jwt.PyJWKSet.from_dict(json.load(handle))
kid = jwt.get_unverified_header(token).get("kid")
key = next(k for k in keys.keys if k.key_id == kid)
claims = jwt.decode(token, key.key, algorithms=[key.algorithm_name], audience=audience, issuer=issuer)
print(claims["sub"])
