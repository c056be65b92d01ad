#!/usr/bin/env bash
# Scans a running gateway's TLS listener with sslyze (installed from PyPI into its own virtual
# environment) and fails on any weak protocol, cipher or handshake finding; also runs sslyze's
# check against Mozilla's "intermediate" profile and prints what it says.
#
#   bash scripts/tls-scan.sh            # builds the gateway, serves a fresh certificate, scans
#
# The certificate is generated for the run (ECDSA P-256, 90 days, CN and SAN localhost).
set -euo pipefail
cd "$(dirname "$0")/.."

work=target/tls-scan
venv=$work/venv
mkdir -p "$work"
if [ ! -x "$venv/bin/sslyze" ]; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'sslyze>=6,<7'
fi
cargo build --quiet -p warden-gateway --bin warden

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 90 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
admin=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/warden.yaml" <<EOF
server:
  listen: 127.0.0.1:$port
  admin_listen: 127.0.0.1:$admin
  tls: { cert: cert.pem, key: key.pem, min_version: "1.2" }
upstream: { url: "http://127.0.0.1:9" }
routes:
  - { path: /open, methods: [GET], auth: none }
EOF
target/debug/warden serve --config "$work/warden.yaml" >"$work/warden.log" 2>&1 &
gateway=$!
trap 'kill $gateway 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null && break
  sleep 0.1
done

"$venv/bin/sslyze" --quiet --json_out="$work/scan.json" "localhost:$port{127.0.0.1}" >/dev/null || true
"$venv/bin/python" - "$work/scan.json" <<'PY'
import json, sys

scan = json.load(open(sys.argv[1]))["server_scan_results"][0]
if scan.get("scan_status") != "COMPLETED":
    sys.exit(f"scan did not complete: {scan.get('connectivity_error_trace')}")
result = scan["scan_result"]
findings = []

def attempt(name):
    entry = result.get(name) or {}
    if entry.get("status") != "COMPLETED":
        findings.append(f"{name}: not completed ({entry.get('error_reason')})")
        return {}
    return entry["result"]

accepted = {}
for version in ["ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1", "tls_1_2", "tls_1_3"]:
    suites = attempt(f"{version}_cipher_suites").get("accepted_cipher_suites", [])
    accepted[version] = [s["cipher_suite"]["name"] for s in suites]
for old in ["ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1"]:
    if accepted[old]:
        findings.append(f"{old} accepted: {accepted[old]}")
if not accepted["tls_1_3"]:
    findings.append("TLS 1.3 not offered")
for name in accepted["tls_1_2"]:
    if "ECDHE" not in name or not ("GCM" in name or "CHACHA20" in name):
        findings.append(f"weak TLS 1.2 suite: {name}")
if attempt("heartbleed").get("is_vulnerable_to_heartbleed"):
    findings.append("heartbleed")
if attempt("openssl_ccs_injection").get("is_vulnerable_to_ccs_injection"):
    findings.append("CCS injection")
if attempt("tls_compression").get("supports_compression"):
    findings.append("TLS compression (CRIME)")
renegotiation = attempt("session_renegotiation")
if renegotiation.get("is_vulnerable_to_client_renegotiation_dos"):
    findings.append("client-initiated renegotiation")
if renegotiation and not renegotiation.get("supports_secure_renegotiation"):
    findings.append("no secure renegotiation")
if attempt("tls_fallback_scsv").get("supports_fallback_scsv") is False:
    findings.append("no TLS_FALLBACK_SCSV")
robot = attempt("robot").get("robot_result", "")
if "VULNERABLE" in robot and "NOT_VULNERABLE" not in robot:
    findings.append(f"ROBOT: {robot}")
curves = attempt("elliptic_curves").get("supported_curves") or []
print("accepted:", json.dumps({k: v for k, v in accepted.items() if v}))
print("curves:", [c["name"] for c in curves])
print("findings:", findings or "none")
sys.exit(1 if findings else 0)
PY
echo "--- Mozilla intermediate profile:"
"$venv/bin/sslyze" --quiet --mozilla_config=intermediate "localhost:$port{127.0.0.1}" | tail -n 15 || true
