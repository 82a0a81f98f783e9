"""W&B mode, identity and secrets: which mode a sweep logs in, the run id of a trial, and the API key kept
out of everything that is logged. Nothing here imports wandb or ever prompts."""
from __future__ import annotations

import hashlib
import netrc
import os
import re
from pathlib import Path
from typing import Any, NamedTuple, Optional
from urllib.parse import urlparse

__all__ = ["MODES", "Mode", "SALT_FILE", "FALLBACK_FILE", "DEFAULT_PROJECT", "project_of", "entity_of",
           "api_key_configured", "resolve_mode", "sweep_mode", "base_url", "salt", "run_id", "process_rank",
           "api_keys", "scrub"]

MODES = ("online", "offline", "disabled")
SALT_FILE = "freezebench-sweep-uid"       # under results/<sweep>/wandb/: one per sweep folder (see run_id)
FALLBACK_FILE = "freezebench-offline"     # under results/<sweep>/wandb/: the driver found the server unreachable
DEFAULT_PROJECT = "freezebench"


def project_of(wandb_cfg, environ=None) -> str:
    """``logging.wandb.project``, else ``WANDB_PROJECT`` (W&B's convention), else ``freezebench``."""
    environ = os.environ if environ is None else environ
    return wandb_cfg.project or environ.get("WANDB_PROJECT", "").strip() or DEFAULT_PROJECT


def entity_of(wandb_cfg, environ=None) -> Optional[str]:
    """``logging.wandb.entity``, else ``WANDB_ENTITY``, else None (W&B's default entity of the API key)."""
    environ = os.environ if environ is None else environ
    return wandb_cfg.entity or environ.get("WANDB_ENTITY", "").strip() or None


class Mode(NamedTuple):
    mode: str            # online | offline | disabled
    why: str             # one phrase for the console


def base_url(environ=None) -> str:
    """The W&B server runs are sent to (``WANDB_BASE_URL``, else W&B's cloud)."""
    environ = os.environ if environ is None else environ
    return (environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").rstrip("/")


def _wandb_host(environ) -> str:
    return urlparse(base_url(environ)).hostname or "api.wandb.ai"


def api_key_configured(environ=None) -> bool:
    """True when ``WANDB_API_KEY`` is set or a netrc file has a password for the W&B host. Never reads the key
    into anything but this boolean; never prompts."""
    environ = os.environ if environ is None else environ
    if environ.get("WANDB_API_KEY", "").strip():
        return True
    path = environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        auth = netrc.netrc(path).authenticators(_wandb_host(environ))
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(auth and auth[2])


def resolve_mode(configured: Optional[str], environ=None) -> Mode:
    """``logging.wandb.mode`` if set, else ``WANDB_MODE`` from the environment, else online with a key and
    offline without. Online without a key falls back to offline (W&B would otherwise prompt for a login)."""
    environ = os.environ if environ is None else environ
    env = {"dryrun": "offline", "run": "online"}.get(environ.get("WANDB_MODE", ""), environ.get("WANDB_MODE", ""))
    key = api_key_configured(environ)
    if configured:
        mode, why = configured, "logging.wandb.mode"
    elif env in MODES:
        mode, why = env, "WANDB_MODE"
    else:
        mode, why = ("online", "an API key is configured") if key else ("offline", "no API key is configured")
    if mode == "online" and not key:
        return Mode("offline", f"{why} asks for online but no API key is configured")
    return Mode(mode, why)


def sweep_mode(configured: Optional[str], sweep_dir: Path, environ=None) -> Mode:
    """:func:`resolve_mode`, except that online becomes offline when the sweep's driver found the server
    unreachable this run (``<sweep>/wandb/freezebench-offline``, written by ``prepare_sweep``): every trial
    then logs offline at once instead of each waiting out W&B's retries."""
    mode = resolve_mode(configured, environ)
    if mode.mode == "online":
        try:
            why = (Path(sweep_dir) / "wandb" / FALLBACK_FILE).read_text(encoding="utf-8").strip()
        except OSError:
            return mode
        return Mode("offline", why or "the W&B server could not be reached")
    return mode


def salt(sweep_dir: Path) -> str:
    try:
        return (sweep_dir / "wandb" / SALT_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def run_id(sweep: str, name: str, salt: str = "") -> str:
    """Deterministic W&B run id ([a-z0-9-], <= 53 chars): readable trial-id prefix + hash of (salt, sweep, name).

    ``salt`` is created once per sweep folder (:func:`prepare_sweep`): a resumed sweep keeps its run ids, a sweep
    started over with ``--overwrite`` gets new ones instead of appending to the old runs."""
    digest = hashlib.sha256(f"{salt}\0{sweep}\0{name}".encode()).hexdigest()[:12]
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].strip("-")
    return f"{slug}-{digest}" if slug else digest


def process_rank(environ=None) -> int:
    """This process's rank in a multi-process trial (``RANK`` as set by torchrun / DeepSpeed), else 0."""
    environ = os.environ if environ is None else environ
    try:
        return int(environ.get("RANK", "0"))
    except ValueError:
        return 0


def api_keys(environ=None) -> list[str]:
    """The configured API key(s) (environment and netrc), only to redact them from what is sent to W&B."""
    environ = os.environ if environ is None else environ
    keys = [environ.get("WANDB_API_KEY", "").strip()]
    try:
        auth = netrc.netrc(environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc"))
        keys.append(((auth.authenticators(_wandb_host(environ)) or ("", "", ""))[2] or "").strip())
    except (OSError, netrc.NetrcParseError):
        pass
    return [k for k in keys if len(k) >= 8]


def scrub(obj: Any, hidden: list[str]) -> Any:
    """Defence in depth: any string that contains the API key is replaced before it reaches W&B (keys become
    strings: W&B sorts config keys, and a label_map may mix int and str keys)."""
    if isinstance(obj, dict):
        return {str(k): scrub(v, hidden) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub(v, hidden) for v in obj]
    if isinstance(obj, str) and any(h in obj for h in hidden):
        return "<redacted>"
    return obj
