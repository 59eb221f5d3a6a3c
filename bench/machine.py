"""What the benchmarks ran on: CPU, cores, BLAS libraries and package versions."""

from __future__ import annotations

import os
import platform
import sys

__all__ = ["cpu_model", "cpu_features", "machine_info", "format_header"]

# The vector features that matter to GEMM and element-wise kernels, in order
VECTOR_FEATURES = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512bw",
                   "avx512vl", "avx512_bf16", "avx512_fp16", "amx_tile", "asimd", "sve")

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


def cpu_features():
    """The vector features of VECTOR_FEATURES that /proc/cpuinfo's flags list."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.lower().startswith(("flags", "features")):
                    flags = set(line.split(":", 1)[1].split())
                    return [name for name in VECTOR_FEATURES if name in flags]
    except OSError:
        pass
    return []


def _version(module_name):
    try:
        module = __import__(module_name)
    except ImportError:
        return None
    return getattr(module, "__version__", "unknown")


def _distribution_version(name):
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


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
    from fastbp import _kernels

    return {
        "cpu": cpu_model(),
        "cpu_features": cpu_features(),
        # the variant of the small-batch products fastbp dispatched to at import
        "fastbp_kernels": _kernels.small_batch_kernels(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": _version("numpy"),
        "scipy": _version("scipy"),
        "fastbp": _version("fastbp"),
        # the peers' versions from their metadata: importing torch or jax here
        # would start their thread pools beside OpenBLAS's in this process
        "torch": _distribution_version("torch"),
        "jax": _distribution_version("jax"),
        "sklearn": _distribution_version("scikit-learn"),
        "blas": blas,
        "blas_summary": summary,
        "warnings": warnings,
    }


def format_header(info):
    """Lines describing the machine, for the top of a report."""
    lines = [
        f"CPU:      {info['cpu']}, {info['cores']} cores (os.cpu_count())",
        f"Vector:   {' '.join(info.get('cpu_features') or ['unknown'])} (/proc/cpuinfo flags); "
        f"fastbp's small-batch kernels: {info.get('fastbp_kernels', 'unknown')}",
        f"Platform: {info['platform']}, Python {info['python']}",
        f"Versions: numpy {info['numpy']}, scipy {info['scipy']}, fastbp {info['fastbp']}, "
        f"torch {info['torch'] or 'not installed'}, jax {info.get('jax') or 'not installed'}, "
        f"scikit-learn {info.get('sklearn') or 'not installed'}",
    ]
    for index, entry in enumerate(info["blas_summary"]):
        lines.append(("BLAS:     " if index == 0 else "          ") + entry)
    if not info["blas_summary"]:
        lines.append("BLAS:     unknown (threadpoolctl not installed)")
    for warning in info["warnings"]:
        lines.append(f"WARNING:  {warning}")
    return lines
