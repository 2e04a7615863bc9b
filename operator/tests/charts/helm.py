"""Drives the real Helm engine (PyPI helm-python-sdk) for operator/tests/charts.rs.

    python helm.py render CHART RELEASE NAMESPACE VALUES_JSON
    python helm.py lint CHART VALUES_JSON KUBE_VERSION

Prints one JSON object on stdout: for render {"manifests": {path: yaml}, "crds":
[{"name", "data"}], "seconds": float}; for lint Helm's report plus "seconds". A Helm
error prints {"error": class name, "message": text} and exits 3.
"""

import json
import sys
import time

import helm_python as helm


def main(argv):
    command, chart = argv[1], argv[2]
    started = time.perf_counter()
    try:
        if command == "render":
            release, namespace, values = argv[3], argv[4], json.loads(argv[5])
            loaded = helm.Chart.load(chart)
            manifests = loaded.render(values or None, name=release, namespace=namespace, is_install=True)
            result = {"manifests": manifests, "crds": loaded.crds}
        elif command == "lint":
            values, kube_version = json.loads(argv[3]), argv[4]
            result = helm.lint(chart, values or None, strict=True, kube_version=kube_version)
        else:
            raise SystemExit(f"unknown command {command}")
    except helm.HelmError as e:
        print(json.dumps({"error": type(e).__name__, "message": str(e)}))
        return 3
    result["seconds"] = time.perf_counter() - started
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
