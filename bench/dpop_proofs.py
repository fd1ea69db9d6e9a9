#!/usr/bin/env python3
"""DPoP proofs (RFC 9449) for bench/dpop, made ahead of a run: wrk's Lua cannot sign ES256.

    dpop_proofs.py key KEY.pem                 a new P-256 key; prints its RFC 7638 thumbprint
    dpop_proofs.py proofs --key KEY.pem --htu URL --jti-prefix P --n N --out FILE
                                               N proofs for POST URL, one a line, each with its
                                               own jti (P + a 9-digit counter), iat = now
    dpop_proofs.py check --expect dpop|bearer [--jkt JKT] < token-response.json
                                               checks a /token answer: token_type, and cnf.jkt
                                               of the access token (read, not verified)

Every proof has the header {"typ":"dpop+jwt","alg":"ES256","jwk":{public key}} and the claims
{"jti","htm":"POST","htu","iat"}. Proofs of one file have the same length. Needs the
`cryptography` package (bench/dpop makes a venv with it when the system Python lacks it).
"""
import argparse
import base64
import hashlib
import json
import sys
import time


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_key(path):
    from cryptography.hazmat.primitives import serialization

    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def public_jwk(key) -> dict:
    numbers = key.public_key().public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64(numbers.x.to_bytes(32, "big")),
        "y": b64(numbers.y.to_bytes(32, "big")),
    }


def thumbprint(jwk: dict) -> str:
    # RFC 7638: the required members, in lexicographic order, no whitespace.
    canonical = json.dumps({m: jwk[m] for m in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    return b64(hashlib.sha256(canonical.encode()).digest())


def cmd_key(args):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with open(args.path, "wb") as f:
        f.write(pem)
    print(thumbprint(public_jwk(key)))


def cmd_proofs(args):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    key = load_key(args.key)
    header = b64(
        json.dumps(
            {"typ": "dpop+jwt", "alg": "ES256", "jwk": public_jwk(key)}, separators=(",", ":")
        ).encode()
    )
    iat = int(time.time())
    # json.dumps of the two strings once; the jti is the only part that changes.
    htu = json.dumps(args.htu)
    prefix = json.dumps(args.jti_prefix)[:-1]
    algorithm = ec.ECDSA(hashes.SHA256())
    started = time.monotonic()
    with open(args.out, "w", buffering=1 << 20) as out:
        batch = []
        for i in range(args.n):
            claims = f'{{"jti":{prefix}{i:09d}","htm":"POST","htu":{htu},"iat":{iat}}}'
            signed = header + "." + b64(claims.encode())
            r, s = decode_dss_signature(key.sign(signed.encode(), algorithm))
            batch.append(signed + "." + b64(r.to_bytes(32, "big") + s.to_bytes(32, "big")) + "\n")
            if len(batch) == 4096:
                out.write("".join(batch))
                batch.clear()
        out.write("".join(batch))
    took = time.monotonic() - started
    print(f"{args.n} proofs in {took:.1f} s ({args.n / took if took else 0:.0f}/s) to {args.out}")


def cmd_check(args):
    try:
        answer = json.load(sys.stdin)
        token_type = answer.get("token_type")
        claims = json.loads(b64_decode(answer["access_token"].split(".")[1]))
    except (ValueError, KeyError, IndexError) as e:
        sys.exit(f"not a token answer with a JWT access token: {e}")
    jkt = (claims.get("cnf") or {}).get("jkt")
    if args.expect == "dpop":
        if token_type != "DPoP":
            sys.exit(f"token_type is {token_type!r}, expected 'DPoP'")
        if jkt != args.jkt:
            sys.exit(f"the access token's cnf.jkt is {jkt!r}, expected {args.jkt!r}")
        print(f"token_type DPoP, cnf.jkt {jkt}")
    else:
        if token_type != "Bearer":
            sys.exit(f"token_type is {token_type!r}, expected 'Bearer'")
        if jkt is not None:
            sys.exit(f"a token issued without a proof carries cnf.jkt {jkt!r}")
        print("token_type Bearer, no cnf")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    key = sub.add_parser("key")
    key.add_argument("path")
    key.set_defaults(run=cmd_key)
    proofs = sub.add_parser("proofs")
    proofs.add_argument("--key", required=True)
    proofs.add_argument("--htu", required=True)
    proofs.add_argument("--jti-prefix", required=True)
    proofs.add_argument("--n", type=int, required=True)
    proofs.add_argument("--out", required=True)
    proofs.set_defaults(run=cmd_proofs)
    check = sub.add_parser("check")
    check.add_argument("--expect", choices=("dpop", "bearer"), required=True)
    check.add_argument("--jkt")
    check.set_defaults(run=cmd_check)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
