"""Griffe extension: Sphinx roles and grouped parameters in molpeg's Google-style docstrings.

molpeg's docstrings are Google style but refer to other objects with Sphinx roles
(``:class:`Pruner```, ``:meth:`Pruner.end_epoch```,
``:func:`~molpeg_plugins.engine.config.num_kept```).
Markdown would print those roles literally. This extension, loaded by mkdocstrings
(``extensions:`` in ``mkdocs.yml``), rewrites each role into an *optional* autorefs link:
the name is resolved in the scope of the object that carries the docstring (its module's
imports and members), and links to the API reference when that object is documented there.
Names outside molpeg (``torch.utils.data.DistributedSampler``) stay as inline code.

A method that overrides a documented method of a base class without a docstring of its own
(``MolPeg.select`` overriding ``Strategy.select``) is shown with the base's docstring.

Non-standard item sections (``Options:``, ``Columns (…):``) become a bold title and a bullet
list, and ``Class attributes:`` becomes a regular ``Attributes:`` section.

It also expands grouped entries of ``Args:``/``Attributes:`` sections, ``a, b: text``,
into one entry per name, so each parameter is matched against the signature.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

SECTION = re.compile(
    r"^(?P<indent>\s*)(?:Args|Arguments|Parameters|Attributes|Keyword Args|Other Parameters):\s*$"
)
GROUPED = re.compile(r"^(?P<indent>\s+)(?P<names>\w+(?:,\s*\w+)+)(?P<rest>\s*(?:\([^)]*\))?:.*)$")
ITEM_SECTION = re.compile(r"^(?P<indent>\s*)(?P<title>Options|Columns(?: \(.*\))?):\s*$")
ITEM = re.compile(r"^(?P<names>\w+(?:,\s*\w+)*):\s+(?P<text>.*)$")
ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj|py:\w+):`(?P<target>[^`]+)`")


def _resolve(obj: griffe.Object, target: str) -> str | None:
    """Full path of ``target`` seen from ``obj`` (``None`` if it cannot be resolved)."""
    head, _, rest = target.partition(".")
    for candidate in (target, head):
        try:
            resolved = obj.resolve(candidate)
        except (griffe.NameResolutionError, AttributeError, KeyError, ValueError):
            continue
        return resolved if candidate == target else f"{resolved}.{rest}" if rest else resolved
    if "." in target:  # already a full path, e.g. molpeg_plugins.engine.strategies.base.Strategy
        return target
    return None


def _rewrite(obj: griffe.Object, text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        target = match.group("target").strip()
        short = target.startswith("~")
        target = target.lstrip("~").rstrip("()")
        title = target.rsplit(".", 1)[-1] if short else target
        code = f"<code>{html.escape(title)}</code>"
        identifier = _resolve(obj, target)
        if identifier is None or not identifier.startswith(("molpeg_plugins", "molpeg_")):
            return code
        return f'<autoref identifier="{html.escape(identifier)}" optional>{code}</autoref>'

    return ROLE.sub(replace, text)


def _listify(text: str) -> str:
    """Render ``Options:``-like sections of ``name: text`` items as a bullet list."""
    lines = text.replace("Class attributes:", "Attributes:").splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        header = ITEM_SECTION.match(lines[i])
        if not header:
            out.append(lines[i])
            i += 1
            continue
        indent = header.group("indent")
        out += [f"{indent}**{header.group('title')}:**", ""]
        i += 1
        while i < len(lines) and (
            not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(indent)
        ):
            stripped = lines[i].strip()
            item = ITEM.match(stripped)
            item_indent = len(lines[i]) - len(lines[i].lstrip())
            if item and (not out[-1].strip() or item_indent == len(indent) + 4):
                names = ", ".join(f"``{n.strip()}``" for n in item.group("names").split(","))
                out.append(f"{indent}- {names}: {item.group('text')}")
            elif stripped:
                out.append(f"{indent}  {stripped}")
            else:
                out.append("")
            i += 1
    return "\n".join(out)


def _split_groups(text: str) -> str:
    """Repeat a grouped entry ``a, b: text`` (and its continuation lines) once per name."""
    lines = text.splitlines()
    out: list[str] = []
    section_indent: int | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        header = SECTION.match(line)
        if header:
            section_indent = len(header.group("indent"))
        elif (
            line.strip()
            and section_indent is not None
            and len(line) - len(line.lstrip()) <= section_indent
        ):
            section_indent = None
        match = GROUPED.match(line) if section_indent is not None else None
        if not match:
            out.append(line)
            i += 1
            continue
        indent = len(match.group("indent"))
        body = [match.group("rest")]
        i += 1
        while i < len(lines) and (
            not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent
        ):
            body.append(lines[i])
            i += 1
        for name in re.split(r",\s*", match.group("names")):
            out.append(f"{match.group('indent')}{name}{body[0]}")
            out.extend(body[1:])
    return "\n".join(out)


def _inherit_docstrings(cls: griffe.Class) -> None:
    """Give undocumented method overrides the docstring of the method they override."""
    try:
        bases = cls.mro()
    except (ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return
    for name, member in cls.members.items():
        if member.is_alias or not member.is_function or member.docstring is not None:
            continue
        for base in bases:
            inherited = base.members.get(name)
            if inherited is not None and inherited.docstring is not None:
                member.docstring = griffe.Docstring(
                    inherited.docstring.value, parent=member, lineno=None
                )
                break


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles of every docstring once the whole package is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Walk the package and rewrite the docstrings of its own objects (not aliases)."""
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            if obj.is_class:
                _inherit_docstrings(obj)  # type: ignore[arg-type]
            if obj.docstring is not None and ":" in obj.docstring.value:
                obj.docstring.value = _rewrite(obj, _split_groups(_listify(obj.docstring.value)))
            stack.extend(
                member
                for member in obj.members.values()
                if not member.is_alias and isinstance(member, griffe.Object)
            )
