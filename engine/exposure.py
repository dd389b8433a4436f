"""Is the bot token within the agents' reach? The start-up check of `serve` (and `chain start`).

Agents run as the same user as llmauto, in their chain's `workdir` (by default the home folder).
Their environment never holds TELEGRAM_* variables, but a file is another matter: the home's
`.env` lies in the default workdir, and an agent that reads `../.env` holds the token. This does
not say the token is safe elsewhere (an agent may read any file its user can); it catches the
common, easy case and says how to move the secrets out.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from engine.chains import chain_names, load_chain
from engine.errors import LlmautoError
from engine.settings import Settings


def env_file_exposure(settings: Settings, workdirs: Iterable[Path]) -> str | None:
    """A warning when the env file that holds TELEGRAM_BOT_TOKEN lies inside a folder agents run
    in (each chain's `workdir`, by default the home): an agent can read it there like any other
    file and hold the token, which its environment is kept free of. None when it does not (or
    the token comes from the environment only). Pure: the paths are taken as given (resolved)."""
    env_file = settings.env_file
    if env_file is None or "TELEGRAM_BOT_TOKEN" not in settings.env_file_keys:
        return None
    inside = sorted({str(w) for w in workdirs if env_file.is_relative_to(w)})
    if not inside:
        return None
    return (f"{env_file} holds TELEGRAM_BOT_TOKEN and lies inside {', '.join(inside)}, where agents run: "
            "they can read it. Keep it outside (LLMAUTO_ENV_FILE=/path/outside/.env) or set the "
            "secrets in the environment only (LLMAUTO_ENV_FILE=none)")



def agent_workdirs(settings: Settings) -> list[Path]:
    """The folders agents run in: each loadable chain's workdir, the home for those without one
    (and the home when there is no chain yet: the next one starts there by default)."""
    folders: set[Path] = set()
    names = chain_names(settings.home)
    for name in names:
        try:
            folders.add(load_chain(settings.home, name).workdir or settings.home)
        except LlmautoError:
            continue  # reported where the chain is used
    return sorted(folders) if names else [settings.home]
