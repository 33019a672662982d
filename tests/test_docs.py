"""The documents agree with each other and with the code where they name the same thing."""

from __future__ import annotations

import re
from pathlib import Path

from monitor.config import Settings

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
SECURITY = (REPO / "docs" / "security.md").read_text(encoding="utf-8")


def section(text: str, title: str) -> str:
    found = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert found is not None, f"no '## {title}' section"
    return found.group(1)


def test_the_security_contact_security_md_points_to_is_in_the_readme() -> None:
    ours, theirs = (
        section(README, "Reporting a vulnerability"),
        section(SECURITY, "Reporting a vulnerability"),
    )
    assert "README" in theirs
    for text in (ours, theirs):
        flat = " ".join(text.split())
        assert "private security advisory on the project's repository" in flat, flat
        # No made-up mailbox: a placeholder address would send reports nowhere.
        assert not re.search(r"[\w.+-]+@[\w-]+\.[\w.]+", flat), flat


def test_settings_named_in_security_md_exist() -> None:
    named = set(re.findall(r"`([a-z_]+)\.([a-z_]+)`", SECURITY))
    sections = {
        name: field.annotation
        for name, field in Settings.model_fields.items()
        if isinstance(field.annotation, type)
    }
    checked = 0
    for outer, inner in named:
        model = sections.get(outer)
        if model is None or not hasattr(model, "model_fields"):
            continue  # `monitor/workers.py` and the like: not a setting
        assert inner in model.model_fields, f"docs/security.md names {outer}.{inner}"
        checked += 1
    assert checked >= 5  # http.max_body, http.timeout, workers.timeout, workers.memory, ...
