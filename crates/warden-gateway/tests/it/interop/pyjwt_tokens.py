"""Independent implementation for interop tests: PyJWT + cryptography generate keys and sign
tokens; prints {"jwks": ..., "tokens": {alg: token}, "hmac_secret": ...} as JSON.

Usage: python3 pyjwt_tokens.py ISSUER AUDIENCE
"""
import base64
import json
import sys
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def int_b64(value: int) -> str:
    return b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))


issuer, audience = sys.argv[1], sys.argv[2]
now = int(time.time())
claims = {"iss": issuer, "aud": audience, "sub": "pyjwt-user", "iat": now, "exp": now + 600,
          "roles": ["user"], "scope": "read:agent"}

rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
p256 = ec.generate_private_key(ec.SECP256R1())
p384 = ec.generate_private_key(ec.SECP384R1())
ed = ed25519.Ed25519PrivateKey.generate()

rsa_numbers = rsa_key.public_key().public_numbers()
jwks = {"keys": [
    {"kty": "RSA", "kid": "py-rsa", "use": "sig", "n": int_b64(rsa_numbers.n), "e": int_b64(rsa_numbers.e)},
    {"kty": "EC", "kid": "py-p256", "crv": "P-256",
     "x": b64(p256.public_key().public_numbers().x.to_bytes(32, "big")),
     "y": b64(p256.public_key().public_numbers().y.to_bytes(32, "big"))},
    {"kty": "EC", "kid": "py-p384", "crv": "P-384",
     "x": b64(p384.public_key().public_numbers().x.to_bytes(48, "big")),
     "y": b64(p384.public_key().public_numbers().y.to_bytes(48, "big"))},
    {"kty": "OKP", "kid": "py-ed", "crv": "Ed25519",
     "x": b64(ed.public_key().public_bytes_raw())},
]}

hmac_secret = "pyjwt-shared-secret-of-at-least-32-bytes!"
tokens = {
    "RS256": jwt.encode(claims, rsa_key, algorithm="RS256", headers={"kid": "py-rsa"}),
    "PS256": jwt.encode(claims, rsa_key, algorithm="PS256", headers={"kid": "py-rsa"}),
    "ES256": jwt.encode(claims, p256, algorithm="ES256", headers={"kid": "py-p256"}),
    "ES384": jwt.encode(claims, p384, algorithm="ES384", headers={"kid": "py-p384"}),
    "EdDSA": jwt.encode(claims, ed, algorithm="EdDSA", headers={"kid": "py-ed"}),
    "HS256": jwt.encode(dict(claims, iss=issuer + "/hmac"), hmac_secret, algorithm="HS256"),
}
print(json.dumps({"jwks": jwks, "tokens": tokens, "hmac_secret": hmac_secret}))
