#!/usr/bin/env python3
"""Worst admissions a pod author can write: CPU and peak RSS per review.

Usage: scripts/hostile-admissions.py BINARY [REVIEW_FIXTURE]

For each hostile shape, starts BINARY's webhook on free loopback ports with
a throwaway certificate (`BINARY certs`), warms it with 20 legitimate
reviews, sends 10 reviews of the shape and prints the CPU per review
(utime+stime from /proc) and the peak RSS (VmHWM) above the warm baseline.
Figures are in docs/security.md.
"""
import json, os, socket, ssl, subprocess, sys, tempfile, time, http.client

binary = sys.argv[1]
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
fixture = sys.argv[2] if len(sys.argv) > 2 else None
if fixture is None:
    for cand in ["crates/webhook/tests/data/review-3c5s.json", "tests/data/review-3c5s.json"]:
        if os.path.exists(os.path.join(root, cand)):
            fixture = os.path.join(root, cand)
            break
review = json.load(open(fixture))

LIM = 65536 - 100
W = '{{ with secret "secret/data/db" }}'
E = '{{ end }}'
k8s_base = {"vault.hashicorp.com/agent-inject": "true", "vault.hashicorp.com/role": "app",
            "vault.hashicorp.com/agent-inject-secret-db": "secret/data/db"}
ours_base = {"vault-injector.io/inject": "true", "vault-injector.io/role": "app",
             "vault-injector.io/secret-t0": "secret/data/db"}

def k8s(tpl):
    return dict(k8s_base, **{"vault.hashicorp.com/agent-inject-template-db": tpl})

def ours(tpl):
    return dict(ours_base, **{"vault-injector.io/template-t0": tpl})

def fill(unit, prefix=W, suffix=E, limit=LIM):
    return prefix + unit * ((limit - len(prefix) - len(suffix)) // len(unit)) + suffix

shapes = {
    "legit": (k8s_base, None),
    "deep": (k8s(W + "{{ " + "(" * 4800 + ".Data.data.x" + ")" * 4800 + " }}" + E), None),
    "deep3k": (k8s(W + "{{ " + "(" * 1450 + ".Data.data.x" + ")" * 1450 + " }}" + E), None),
    "actions": (k8s(fill("{{ " + "(toLower " * 30 + ".Data.x" + ")" * 30 + " }}")), None),
    "actions2": (k8s(W + "{{.Data.a.b.c}}" * min(4000, (LIM - 60) // 15) + E), None),
    "literal": (k8s(fill("{%{#")), None),
    "literal2": (k8s(fill("\u0001{%")), None),
    "blocks": (k8s(fill("{{ if .Data.x }}" * 31 + "{{ " + '(eq "a" ' * 32 + ".Data.x" + ")" * 32
                        + " }}" + "{{ end }}" * 31)), None),
    "jinja": (ours(fill("{% if x %}" * 140 + "{{ " + "not " * 500 + "x }}" + "{% endif %}" * 140,
                        "", "")), None),
    "jinja2": (ours(fill("{{ x" + " + x" * 255 + " }}", "", "")), None),
    "smuggle": (k8s("{% endraw %}{% for k in secret %}K{% endfor %}{% raw %}" + W
                    + "{{ .Data.data.x }}" + E), None),
}
ref4k = "vault:" + "a/" * 63 + "b" * 3900 + "#k"
ref_long = "vault:" + "a/" * 2040 + "x#k"
n_long = 3 * 1024 * 1024 // (len(ref_long) + 20) // 4
shapes["refs255"] = (None, [{"name": f"V{i}", "value": ref4k} for i in range(255)])
shapes["refs"] = (None, [{"name": f"V{i}", "value": ref_long} for i in range(n_long)])
shapes["plain"] = (None, [{"name": f"V{i}", "value": "x" * len(ref_long)} for i in range(n_long)])

def body(ann, env):
    r = json.loads(json.dumps(review))
    obj = r["request"]["object"]
    if ann is not None:
        obj["metadata"]["annotations"] = ann
    if env is not None:
        obj["spec"]["containers"] = obj["spec"]["containers"][:1]
        obj["spec"]["containers"][0]["env"] = env
    return json.dumps(r).encode()

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

tmp = tempfile.mkdtemp()
subprocess.run([binary, "certs", "--out", tmp, "--host", "localhost,127.0.0.1"], check=True,
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
ctx = ssl.create_default_context(cafile=f"{tmp}/ca.crt")


class Webhook:
    def __init__(self):
        self.port, admin = free_port(), free_port()
        self.proc = subprocess.Popen(
            [binary, "webhook", "--listen", f"127.0.0.1:{self.port}",
             "--admin-listen", f"127.0.0.1:{admin}", "--tls-cert", f"{tmp}/tls.crt",
             "--tls-key", f"{tmp}/tls.key", "--log-format", "plain"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                self.post(body(*shapes["legit"]))
                return
            except OSError:
                time.sleep(0.1)

    def post(self, b):
        c = http.client.HTTPSConnection("localhost", self.port, context=ctx, timeout=30)
        c.request("POST", "/mutate", b, {"content-type": "application/json"})
        r = c.getresponse(); d = r.read(); c.close()
        return r.status, (json.loads(d) if r.status == 200 else d)

    def field(self, name):
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith(name):
                return int(line.split()[1])

    def cpu(self):
        f = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


# Each shape gets a fresh webhook, warmed with 20 legitimate reviews, so a
# shape's peak is not hidden in heap that an earlier, larger body freed.
N = 10
legit = body(*shapes["legit"])
print("shape      body KiB  allowed  CPU/review  peak RSS over warm baseline")
for name, (ann, env) in shapes.items():
    w = Webhook()
    try:
        for _ in range(20):
            w.post(legit)
        base = w.field("VmHWM")
        b = body(ann, env)
        c0 = w.cpu()
        for _ in range(N):
            s, r = w.post(b)
        c1 = w.cpu()
        allowed = r["response"]["allowed"] if s == 200 else s
        print(f"{name:9s} {len(b) >> 10:9d}  {allowed!s:7}  {(c1 - c0) / N * 1000:7.1f} ms"
              f"  {(w.field('VmHWM') - base) / 1024:6.2f} MiB"
              f"  (alive: {w.proc.poll() is None})")
    finally:
        w.proc.kill()
