"""Is a network service there? One cheap, bounded look before work that would otherwise sit out a library's
retries (the Hugging Face Hub client retries for ~30 s, W&B for a minute per run).

:func:`probe` asks once, with a hard deadline that also covers a hanging DNS lookup, and counts any HTTP answer
(even 404 or 500) as "reachable": the question is whether the server is there, not whether it likes us.
Proxies come from the environment as for every urllib request (``HTTPS_PROXY``, ``NO_PROXY``). It lives in the
data layer because the Hub is where data sets come from; the W&B adapter and pre-flight use it too.
"""
from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from typing import Optional

import huggingface_hub

__all__ = ["probe", "hub_endpoint", "hub_offline", "hub_cached"]

_TRUE = ("1", "true", "yes", "on")


def probe(url: str, timeout: float = 3.0) -> Optional[str]:
    """None when ``url`` answers within ``timeout`` seconds, else why not (for a message)."""
    outcome: list[Optional[str]] = []

    def ask() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
            outcome.append(None)
        except urllib.error.HTTPError:
            outcome.append(None)             # the server answered
        except urllib.error.URLError as exc:
            outcome.append(str(getattr(exc, "reason", exc)))
        except (OSError, ValueError) as exc:
            outcome.append(f"{type(exc).__name__}: {exc}")

    worker = threading.Thread(target=ask, name="freezebench-probe", daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    return outcome[0] if outcome else f"no answer within {timeout:g} s"


def hub_endpoint() -> str:
    """The Hugging Face Hub the libraries talk to (``HF_ENDPOINT``, as huggingface_hub reads it)."""
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def hub_offline() -> bool:
    """True when the user told the HF libraries to stay offline (they then use the local cache only)."""
    return any(os.environ.get(k, "").strip().lower() in _TRUE
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"))


def hub_cached(repo_id: str, revision: Optional[str] = None, repo_type: str = "model") -> bool:
    """True when the local HF cache holds the repo's ``config.json`` (model) / any snapshot (data set)."""
    try:
        if repo_type == "model":
            found = huggingface_hub.try_to_load_from_cache(repo_id, "config.json", revision=revision)
            return isinstance(found, str)
        return any(r.repo_id == repo_id and r.repo_type == repo_type
                   for r in huggingface_hub.scan_cache_dir().repos)
    except Exception:  # noqa: BLE001 - a malformed id or cache: "not cached" is the honest answer
        return False
