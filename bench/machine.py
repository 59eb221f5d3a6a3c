"""What the benchmarks ran on: CPU, cores, BLAS libraries and package versions."""

from __future__ import annotations

import os
import platform
import sys

__all__ = ["cpu_model", "machine_info", "format_header"]

# OpenBLAS settings that skew timings (a forced core type or cache size)
SKEWING_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def cpu_model():
    """The CPU's model name from /proc/cpuinfo, or platform's guess elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _version(module_name):
    try:
        module = __import__(module_name)
    except ImportError:
        return None
    return getattr(module, "__version__", "unknown")


def _short_path(path):
    """'numpy.libs/libscipy_openblas64_-....so': the folder tells whose copy it is."""
    if not path:
        return "?"
    return os.path.join(os.path.basename(os.path.dirname(path)), os.path.basename(path))


def machine_info():
    """A JSON-serializable description of the machine and software."""
    import fastbp  # noqa: F401  (loads the BLAS fastbp calls, so threadpoolctl sees it)
    import scipy.linalg  # noqa: F401

    try:
        from threadpoolctl import threadpool_info

        pools = threadpool_info()
    except ImportError:
        pools = []
    blas = [
        {
            "library": pool.get("internal_api"),
            "version": pool.get("version"),
            "threads": pool.get("num_threads"),
            "architecture": pool.get("architecture"),
            "threading_layer": pool.get("threading_layer"),
            "filepath": pool.get("filepath"),
            "user_api": pool.get("user_api"),
        }
        for pool in pools
    ]
    summary = [
        f"{entry['user_api']}: {entry['library']} {entry['version'] or ''} "
        f"({entry['threads']} threads"
        + (f", {entry['architecture']}" if entry["architecture"] else "")
        + f", {_short_path(entry['filepath'])})"
        for entry in blas
    ]
    warnings = [
        f"{name}={os.environ[name]} is set; unset it for benchmarks "
        f"(env -u {' -u '.join(SKEWING_VARIABLES)} ...)"
        for name in SKEWING_VARIABLES if name in os.environ
    ]
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": _version("numpy"),
        "scipy": _version("scipy"),
        "fastbp": _version("fastbp"),
        "torch": _version("torch"),
        "blas": blas,
        "blas_summary": summary,
        "warnings": warnings,
    }


def format_header(info):
    """Lines describing the machine, for the top of a report."""
    lines = [
        f"CPU:      {info['cpu']}, {info['cores']} cores (os.cpu_count())",
        f"Platform: {info['platform']}, Python {info['python']}",
        f"Versions: numpy {info['numpy']}, scipy {info['scipy']}, fastbp {info['fastbp']}, "
        f"torch {info['torch'] or 'not installed'}",
    ]
    for index, entry in enumerate(info["blas_summary"]):
        lines.append(("BLAS:     " if index == 0 else "          ") + entry)
    if not info["blas_summary"]:
        lines.append("BLAS:     unknown (threadpoolctl not installed)")
    for warning in info["warnings"]:
        lines.append(f"WARNING:  {warning}")
    return lines
