#!/usr/bin/env bash
# Validates docker-compose.yml (or the file given as $1) without building or pulling anything:
#   1. `docker compose config -q` (schema, interpolation) when the compose plugin (or docker-compose) exists;
#   2. the project's own rules, in Python with PyYAML (the `dev` extra): services redis/api/worker exist and
#      have healthchecks, redis runs with --appendonly yes, every build names an existing Dockerfile, every
#      bind-mounted repo path exists, api and worker wait for a healthy redis, and api/worker(-gpu) set only
#      PORT, REDIS_URL, FASHION_MNIST_DIR or DFI_* variables (what service/settings.py reads).
# Without the compose CLI, step 2 is the whole check and PyYAML is required. Exit 0 only when all passes.
# Without an argument, the same rules are also checked on docker-compose.yml merged with docker-compose.local.yml
# (the override for machines without registry access: docker/README.md), merged as compose merges mappings.
set -euo pipefail
cd "$(dirname "$0")/.."
file=${1:-docker-compose.yml}
[[ -f $file ]] || { echo "check_compose: $file not found" >&2; exit 1; }
overrides=()
if [[ $# -eq 0 && -f docker-compose.local.yml ]]; then overrides=(docker-compose.local.yml); fi
py=${PYTHON:-python3}

compose=()
if docker compose version >/dev/null 2>&1; then compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1 && docker-compose version >/dev/null 2>&1; then compose=(docker-compose)
fi
if ((${#compose[@]})); then
  # --profile gpu so that the optional api-gpu service is validated too.
  "${compose[@]}" -f "$file" --profile gpu config -q || { echo "check_compose: '${compose[*]} config' rejected $file" >&2; exit 1; }
  for o in "${overrides[@]}"; do
    "${compose[@]}" -f "$file" -f "$o" --profile gpu config -q || { echo "check_compose: '${compose[*]} config' rejected $file + $o" >&2; exit 1; }
  done
  echo "check_compose: ${compose[*]} config: ok"
else
  echo "check_compose: no docker compose CLI here; checking with Python + PyYAML only"
fi

if ! "$py" -c 'import yaml' 2>/dev/null; then
  if ((${#compose[@]})); then
    echo "check_compose: warning: PyYAML missing, project rules not checked (pip install -e '.[dev]')" >&2
    exit 0
  fi
  echo "check_compose: PyYAML is required when docker compose is absent: pip install -e '.[dev]' (or pyyaml)" >&2
  exit 1
fi

for files in "$file" "${overrides[@]/#/$file+}"; do
"$py" - "$files" <<'PY'
import os
import re
import sys
from pathlib import Path

import yaml

paths = [Path(f) for f in sys.argv[1].split("+")]  # "base+override": the override merged onto the base
path = Path(" + ".join(map(str, paths)))
root = paths[0].resolve().parent
problems: list[str] = []


def merge(base, override):
    """Compose's merge of an override file, as far as these rules need: mappings merge key by key, anything else
    (scalars, `command` and other lists) is replaced by the override's value."""
    if isinstance(base, dict) and isinstance(override, dict):
        return {k: merge(base[k], v) if k in base else v for k, v in override.items()} | {
            k: v for k, v in base.items() if k not in override}
    return override


def interpolate(value: str) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, $VAR and $$, from this shell's environment."""
    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("braced") or m.group("bare")
        op, default = m.group("op"), m.group("default") or ""
        val = os.environ.get(name)
        if op == ":-" and not val or op == "-" and val is None:
            return default
        return val or ""
    return re.sub(r"\$\$|\$\{(?P<braced>\w+)(?:(?P<op>:?-)(?P<default>[^}]*))?\}|\$(?P<bare>\w+)", sub, value)


doc = None
for part in paths:
    try:
        doc = merge(doc, yaml.safe_load(part.read_text())) if doc is not None else yaml.safe_load(part.read_text())
    except yaml.YAMLError as e:
        sys.exit(f"check_compose: {part} is not valid YAML: {e}")
if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
    sys.exit(f"check_compose: {path} has no `services` mapping")
services: dict = doc["services"]
declared_volumes = set((doc.get("volumes") or {}).keys())

for name in ("redis", "api", "worker"):
    if name not in services:
        problems.append(f"service {name!r} is missing")

for name, svc in services.items():
    svc = svc or {}
    hc = svc.get("healthcheck")
    if name in ("redis", "api", "worker") and (
        not isinstance(hc, dict) or hc.get("disable") or hc.get("test") in (None, "NONE", ["NONE"])
    ):
        problems.append(f"{name}: no healthcheck")

    build = svc.get("build")
    if build is not None:
        build = {"context": build} if isinstance(build, str) else build
        dockerfile = root / interpolate(str(build.get("context", "."))) / interpolate(build.get("dockerfile", "Dockerfile"))
        if not dockerfile.is_file():
            problems.append(f"{name}: Dockerfile {dockerfile} does not exist")
    elif name in ("api", "worker"):
        problems.append(f"{name}: no `build` section (expected one of docker/Dockerfile.*)")

    for vol in svc.get("volumes") or []:
        if isinstance(vol, str):
            source = interpolate(vol).split(":")[0] if ":" in vol else None
            kind = None if source is None else ("bind" if source.startswith((".", "/", "~")) else "volume")
        else:
            source, kind = interpolate(str(vol.get("source", ""))), vol.get("type", "volume")
        if source is None:
            continue  # anonymous volume
        if kind == "volume" and source not in declared_volumes:
            problems.append(f"{name}: named volume {source!r} is not declared under top-level `volumes`")
        if kind == "bind" and not source.startswith(("/", "~")) and not (root / source).exists():
            problems.append(f"{name}: bind-mounted repo path {source!r} does not exist")

    if name in ("api", "worker", "api-gpu"):
        deps = svc.get("depends_on") or {}
        cond = (deps.get("redis") or {}).get("condition") if isinstance(deps, dict) else None
        if cond != "service_healthy":
            problems.append(f"{name}: must depend on redis with `condition: service_healthy` (got {cond!r})")
        env = svc.get("environment") or {}
        names = list(env) if isinstance(env, dict) else [str(e).split("=", 1)[0] for e in env]
        for var in names:
            if var not in ("PORT", "REDIS_URL", "FASHION_MNIST_DIR") and not var.startswith("DFI_"):
                problems.append(f"{name}: environment variable {var!r} is neither PORT, REDIS_URL, "
                                "FASHION_MNIST_DIR nor DFI_* (service/settings.py would ignore it)")
        if svc.get("env_file"):
            problems.append(f"{name}: env_file is not allowed (its variable names cannot be checked here)")

# Issue 18: the API writes uploads and every worker reads them and writes chunks, so all of them must mount the
# same named volume at the DFI_RESULTS_DIR they are given (a per-container store would lose other workers' chunks).
def results_mount(svc: dict) -> tuple[str | None, str | None]:
    env = svc.get("environment") or {}
    env = env if isinstance(env, dict) else dict(str(e).split("=", 1) for e in env if "=" in str(e))
    where = env.get("DFI_RESULTS_DIR")
    for vol in svc.get("volumes") or []:
        text = interpolate(vol) if isinstance(vol, str) else f"{vol.get('source')}:{vol.get('target')}"
        parts = text.split(":")
        if len(parts) >= 2 and parts[1] == where and not parts[0].startswith((".", "/", "~")):
            return where, parts[0]
    return where, None


mounts = {name: results_mount(services[name] or {}) for name in ("api", "worker", "api-gpu") if name in services}
for name, (where, volume) in mounts.items():
    if where is None or volume is None:
        problems.append(f"{name}: needs DFI_RESULTS_DIR and a named volume mounted there (the shared result store)")
if len({volume for _, volume in mounts.values()}) > 1:
    problems.append(f"api and workers mount different result volumes: {mounts}")

redis = services.get("redis") or {}
command = redis.get("command")
tokens = command.split() if isinstance(command, str) else [str(t) for t in command or []]
if not any(a == "--appendonly" and b == "yes" for a, b in zip(tokens, tokens[1:])):
    problems.append(f"redis: command must include `--appendonly yes` (got {command!r})")

if problems:
    print(f"check_compose: {path}: {len(problems)} problem(s):", *(f"  - {p}" for p in problems), sep="\n", file=sys.stderr)
    sys.exit(1)
print(f"check_compose: project rules: ok on {path} ({', '.join(services)})")
PY
done
