"""The pure parts of issue #12's secret fixes, as tables: what the Redactor masks (every form of a
secret, a form broken across lines, any 12-character run of one), what `cut` and `headline` leave
of a secret, which variables count as secrets, where the env file comes from, the start-up check
of the env file's place, and the cleaning of a person's text before it goes into a handoff."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine import handoff as hp
from engine.errors import ConfigError
from engine.exposure import env_file_exposure
from engine.redact import MASK, MIN_RUN, Redactor, cut
from engine.settings import Settings
from tests.conftest import make_settings

TOKEN = "7012345678:AAH.fake-secret-part-of-the-test-token_x9"  # 46 characters; the dot keeps it from looking like a real token
PART = TOKEN.split(":", 1)[1]
API_KEY = "sk-ant-api03-fake-key-value-0123456789abcdef"


def runs(secret: str, n: int = MIN_RUN) -> list[str]:
    return [secret[i:i + n] for i in range(len(secret) - n + 1)]


def leaks(text: str) -> list[str]:
    """Every run of MIN_RUN characters of a test secret that `text` still holds."""
    return [r for s in (TOKEN, API_KEY) for r in runs(s) if r in text]


REDACT = Redactor([TOKEN, API_KEY])


@pytest.mark.parametrize("text", [
    f"token {TOKEN} end",
    f"secret part alone {PART} end",  # the bot id is public: this part is the whole secret
    f"url-encoded {TOKEN.replace(':', '%3A')} end",
    f"html &lt;{TOKEN}&gt; end",
    f"wrapped {TOKEN[:20]}\n    {TOKEN[20:]} end",
    f"wrapped early {TOKEN[:3]}\n{TOKEN[3:]} end",
    f"wrapped late {TOKEN[:-3]}\r\n\t{TOKEN[-3:]} end",
    f"wrapped twice {TOKEN[:15]}\n  {TOKEN[15:30]}\n  {TOKEN[30:]} end",
    f"key wrapped {API_KEY[:30]}\n{API_KEY[30:]}",
    "x" * 251 + TOKEN[:47],  # the cut of the issue: 47 of the token's characters at the end
    TOKEN[-30:] + " and a text cut before it",  # and at the start
    f"a run anywhere -{API_KEY[5:5 + MIN_RUN]}- of the key",
])
def test_every_form_and_every_long_run_of_a_secret_is_masked(text: str) -> None:
    """Fails on the old Redactor (whole raw and HTML forms only) for every row but the first and
    the HTML one."""
    clean = REDACT(text)
    assert leaks(clean) == [], clean
    assert MASK in clean


@pytest.mark.parametrize("text", [
    "bot 7012345678 is public",
    "7012345678: is the id with its colon",
    f"eleven chars {PART[:MIN_RUN - 1]} stay",  # below the run length: ordinary words survive
    "a long ordinary text with no secret in it, only words and code: def f(x): return x",
])
def test_what_is_not_a_secret_stays(text: str) -> None:
    assert REDACT(text) == text


def test_masking_keeps_the_text_around_and_bytes_that_are_not_utf8() -> None:
    assert REDACT(f"a {TOKEN[:20]}\n  {TOKEN[20:]} b") == f"a {MASK} b"
    assert REDACT.data(b"\xff\xfe " + PART.encode() + b" \xff") == b"\xff\xfe " + MASK.encode() + b" \xff"
    assert REDACT.value({"k": [f"x {PART}"]}) == {"k": [f"x {MASK}"]}


def test_cut_never_ends_inside_a_long_word() -> None:
    """Broke `cut` to `text[:max_chars - 1] + '…'` (the old headline): the first row fails."""
    text = "x " * 120 + "y" * 11 + " " + TOKEN + " tail"
    at = text.index(TOKEN)
    for n in range(at - 5, at + len(TOKEN)):  # every cut that falls inside the token
        out = cut(text, n)
        assert len(out) <= n and leaks(out) == [], (n, out)
    assert cut("short words only here", 12) == "short words…"
    assert cut("fits", 10) == "fits"


def test_headline_redacts_before_it_cuts_and_never_leaves_part_of_a_token() -> None:
    """The issue's case: 251 characters, then the token. The old headline kept 47 of its 48."""
    text = "x" * 251 + TOKEN + "\nmore"
    assert leaks(hp.headline(text)) == []
    assert hp.headline(f"## Status\nfound {TOKEN} here", redact=REDACT) == f"## Status\nfound {MASK} here"


@pytest.mark.parametrize(("raw", "clean"), [
    ("yes\x00 go on", "yes go on"),
    ("a\r\nb\rc", "a\nb\nc"),
    ("tab\tand\nnewline stay", "tab\tand\nnewline stay"),
    ("esc \x1b[31mred\x7f", "esc [31mred"),
    ("bidi \u202eevil\u202c and \u2067x\u2069", "bidi <U+202E>evil<U+202C> and <U+2067>x<U+2069>"),
    ("hebrew שלום and an LRM \u200e stay", "hebrew שלום and an LRM \u200e stay"),
])
def test_clean_person_text(raw: str, clean: str) -> None:
    assert hp.clean_person_text(raw) == clean


def test_an_operator_note_holds_no_control_character() -> None:
    """Broke operator_note back to `note.strip()`: the NUL stays and this fails."""
    note = hp.operator_note("# plan\n", "go\x00 ahead\x07", "bob\x00\nx", "2026-12-01T10:00")
    assert note == "# plan\n\n## Operator note (bob x, 2026-12-01T10:00)\ngo ahead\n"


@pytest.mark.parametrize(("key", "secret"), [
    ("TELEGRAM_BOT_TOKEN", True), ("ANTHROPIC_API_KEY", True), ("OPENAI_KEY", True), ("DB_PASSWORD", True),
    ("SMTP_PASS", True), ("GOOGLE_CREDENTIALS", True), ("WEBHOOK_SECRET", True), ("GH_TOKEN", True),
    ("SSH_KEY_PATH", False), ("GOOGLE_CREDENTIALS_FILE", False), ("AWS_ACCESS_KEY_ID", False),
    ("PATH", False), ("TELEGRAM_CHAT_ID", False), ("LLMAUTO_HOME", False),
])
def test_which_variables_are_secrets(home: Path, key: str, secret: bool) -> None:
    """Broke secrets() back to its four words: KEY, PASS and CREDENTIAL rows fail."""
    value = "value-of-the-variable-0123"
    assert (value in make_settings(home, environ={key: value}).secrets()) is secret
    assert make_settings(home, environ={key: "short"}).secrets() == ()


def _env_file(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    os.chmod(path, 0o600)
    return path


def test_llmauto_env_file_points_elsewhere_or_nowhere(home: Path, tmp_path: Path) -> None:
    _env_file(home / ".env", f"TELEGRAM_BOT_TOKEN={TOKEN}\nTELEGRAM_CHAT_ID=5\n")
    outside = _env_file(tmp_path / "secrets" / "llmauto.env", "TELEGRAM_BOT_TOKEN=other-token-value-0123\n")
    base = {"LLMAUTO_HOME": str(home)}
    default = Settings.load(base)
    assert (default.telegram_token, default.env_file, default.chat_id) == (TOKEN, home / ".env", 5)
    assert "TELEGRAM_BOT_TOKEN" in default.env_file_keys
    assert Settings.load({**base, "LLMAUTO_ENV_FILE": ""}).env_file == home / ".env"
    moved = Settings.load({**base, "LLMAUTO_ENV_FILE": str(outside)})
    assert (moved.telegram_token, moved.env_file, moved.chat_id) == ("other-token-value-0123", outside, None)
    bare = Settings.load({**base, "LLMAUTO_ENV_FILE": "none", "TELEGRAM_BOT_TOKEN": "env-only-token-0123"})
    assert (bare.telegram_token, bare.env_file, bare.env_file_keys) == ("env-only-token-0123", None, frozenset())
    with pytest.raises(ConfigError, match=r"LLMAUTO_ENV_FILE: .*missing\.env does not exist"):
        Settings.load({**base, "LLMAUTO_ENV_FILE": "missing.env"})


def test_a_group_readable_env_file_is_warned_about(home: Path) -> None:
    path = _env_file(home / ".env", f"TELEGRAM_BOT_TOKEN={TOKEN}\n")
    os.chmod(path, 0o640)
    assert any("chmod 600" in w for w in Settings.load({"LLMAUTO_HOME": str(home)}).warnings)


@pytest.mark.parametrize(("env_file", "keys", "workdirs", "warned"), [
    ("home/.env", {"TELEGRAM_BOT_TOKEN"}, ["home"], True),  # the default: agents run in the home
    ("home/.env", {"TELEGRAM_BOT_TOKEN"}, ["home/project"], False),  # below the file's folder only
    ("home/.env", {"TELEGRAM_BOT_TOKEN"}, ["src", "home"], True),
    ("work/.env", {"TELEGRAM_BOT_TOKEN"}, ["work/repo", "/"], True),  # a workdir of / sees everything
    ("home/.env", {"ANTHROPIC_API_KEY"}, ["home"], False),  # no token in it (agents get the key anyway)
    (None, set(), ["home"], False),  # LLMAUTO_ENV_FILE=none: nothing to read
    ("/etc/llmauto/secrets.env", {"TELEGRAM_BOT_TOKEN"}, ["home", "src"], False),
])
def test_env_file_exposure(tmp_path: Path, env_file: str | None, keys: set[str], workdirs: list[str], warned: bool) -> None:
    """Broke the check to `env_file.is_relative_to(settings.home)`: rows 4 and 2 fail."""
    def at(p: str) -> Path:
        return Path(p) if p.startswith("/") else tmp_path / p

    settings = make_settings(tmp_path / "home", env_file=at(env_file) if env_file else None,
                             env_file_keys=frozenset(keys))
    message = env_file_exposure(settings, [at(w) for w in workdirs])
    assert (message is not None) is warned
    if message:
        assert "TELEGRAM_BOT_TOKEN" in message and "LLMAUTO_ENV_FILE" in message and TOKEN not in message
