"""README.md's configuration reference against conf/ and the registries, so it cannot go
stale: each config group has a subsection whose table lists exactly the group's option
files, and every registered kind of component has its group covered.

The reference is the README's "## Configuration reference" section. A subsection whose
heading starts with a code span names a group (e.g. "### `strategy`"); the first column
of the table under it holds the option names in backticks. Other subsections (the stage
settings) are not group tables and are left alone.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CONF = ROOT / "conf"
SECTION = "Configuration reference"
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and any(p.glob("*.yaml")))

_CODE = re.compile(r"`([^`]+)`")
_SEPARATOR = re.compile(r"^\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?$")


def _section_lines(text: str, title: str) -> list[str]:
    """The lines of the level-2 section `title`, up to the next level-2 heading; lines in
    fenced code blocks are blanked, so that nothing in an example counts."""
    lines: list[str] = []
    found = inside = fenced = False
    for line in text.splitlines():
        fence = line.lstrip().startswith("```")
        if fence:
            fenced = not fenced
        elif not fenced and re.match(r"^##\s", line):
            inside = line[2:].strip() == title
            found = found or inside
            continue
        if inside:
            lines.append("" if fence or fenced else line)
    assert found, f"README.md has no '## {title}' section"
    return lines


def _subsections(lines: list[str]) -> dict[str, list[str]]:
    """Group name -> the subsection's lines, for each '### ' heading starting with a code
    span (its text, without a trailing slash)."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines:
        if line.startswith("### "):
            match = _CODE.match(line[4:].strip())
            current = None
            if match:
                name = match.group(1).strip().rstrip("/")
                assert name not in found, (
                    f"README.md's {SECTION} has two '### `{name}`' subsections"
                )
                current = found[name] = []
            continue
        if current is not None:  # deeper headings stay within the subsection
            current.append(line)
    return found


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


def _options(lines: list[str], group: str) -> list[str]:
    """The option names in the first column of the subsection's tables (header and
    separator rows skipped), in order, duplicates kept."""
    names: list[str] = []
    table: list[str] = []
    for line in [*lines, ""]:
        if line.lstrip().startswith("|"):
            table.append(line.strip())
            continue
        if table:
            body = table[2:] if len(table) > 1 and _SEPARATOR.match(table[1]) else table
            for row in body:
                first = _cells(row)[0]
                spans = _CODE.findall(first)
                assert spans, (
                    f"README.md, {SECTION} `{group}`: the row {row[:60]!r} has no option name "
                    "in backticks in its first column"
                )
                names += [s.strip() for s in spans]
            table = []
    return names


def _reference() -> dict[str, list[str]]:
    """Group -> the option names its README table lists."""
    lines = _section_lines(README.read_text(encoding="utf-8"), SECTION)
    return {group: _options(body, group) for group, body in _subsections(lines).items()}


def test_conf_has_groups() -> None:
    assert GROUPS, f"no config groups found under {CONF}"


@pytest.mark.parametrize("group", GROUPS)
def test_reference_lists_exactly_the_option_files(group: str) -> None:
    reference = _reference()
    assert group in reference, (
        f"README.md's {SECTION} has no '### `{group}`' subsection for conf/{group}/"
    )
    listed = reference[group]
    repeated = sorted({name for name in listed if listed.count(name) > 1})
    assert not repeated, f"README.md, {SECTION} `{group}`: listed more than once: {repeated}"
    files = {path.stem for path in (CONF / group).glob("*.yaml")}
    missing = sorted(files - set(listed))
    stale = sorted(set(listed) - files)
    assert not missing and not stale, (
        f"README.md, {SECTION} `{group}` is out of date with conf/{group}/: "
        f"options with no row: {missing or 'none'}; rows with no conf/{group}/<name>.yaml: "
        f"{stale or 'none'}"
    )


def test_every_reference_subsection_is_a_known_group() -> None:
    from nasflow.registry import COMPONENTS

    known = set(GROUPS) | {registry.group for registry in COMPONENTS}
    unknown = sorted(set(_reference()) - known)
    assert not unknown, (
        f"README.md's {SECTION} has subsections for groups that neither conf/ nor a "
        f"registry has: {unknown}"
    )


def test_every_registry_has_its_group_covered() -> None:
    """Each kind of component is documented: a group with option files is checked against
    them (above); one without (the rankers, chosen inside an estimator's option file) must
    list exactly the registered names."""
    from nasflow.registry import COMPONENTS

    reference = _reference()
    for registry in COMPONENTS:
        names = set(registry.load())
        group = registry.group
        assert group in reference, (
            f"the {registry.kind} registry ({sorted(names)}) has no '### `{group}`' "
            f"subsection in README.md's {SECTION}"
        )
        if group in GROUPS:
            continue
        listed = set(reference[group])
        assert listed == names, (
            f"README.md, {SECTION} `{group}` (no conf/{group}/, so the registry is the "
            f"truth): not listed: {sorted(names - listed) or 'none'}; listed but not "
            f"registered: {sorted(listed - names) or 'none'}"
        )
