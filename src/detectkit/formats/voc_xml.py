"""A safe reader for Pascal VOC XML: elements that keep their line, and no DTD.

Documents with a ``<!DOCTYPE>`` or ``<!ENTITY>`` declaration are refused (no entity expansion,
no external entities), using only the standard library's expat parser.
"""

from __future__ import annotations

from collections.abc import Iterator
from xml.parsers import expat


class ForbiddenXML(Exception):
    def __init__(self, what: str, line: int) -> None:
        super().__init__(what)
        self.what = what
        self.line = line


class XmlElement:
    """A parsed XML element with the line it starts on (ElementTree does not keep lines)."""

    __slots__ = ("children", "line", "parts", "tag")

    def __init__(self, tag: str, line: int) -> None:
        self.tag = tag
        self.line = line
        self.children: list[XmlElement] = []
        self.parts: list[str] = []

    def find(self, tag: str) -> XmlElement | None:
        return next((c for c in self.children if c.tag == tag), None)

    def findall(self, tag: str) -> Iterator[XmlElement]:
        return (c for c in self.children if c.tag == tag)

    @property
    def text(self) -> str:
        return "".join(self.parts).strip()

    def findtext(self, path: str) -> str | None:
        """Stripped text of the child at ``path`` (``size/width``); ``None`` when absent."""
        el: XmlElement | None = self
        for tag in path.split("/"):
            el = el.find(tag) if el is not None else None
        return el.text if el is not None else None


def parse_xml(data: bytes) -> XmlElement:
    """Parse ``data`` with expat, refusing any DTD: no entity can be declared or expanded.

    Raises:
        ForbiddenXML: The document declares a DOCTYPE or an entity.
        expat.ExpatError: The document is not well-formed (an undefined ``&entity;`` included).
    """
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[XmlElement] = []
    roots: list[XmlElement] = []

    def start(tag: str, _attrs: dict[str, str]) -> None:
        el = XmlElement(tag, parser.CurrentLineNumber)
        (stack[-1].children if stack else roots).append(el)
        stack.append(el)

    def end(_tag: str) -> None:
        stack.pop()

    def chars(text: str) -> None:
        if stack:
            stack[-1].parts.append(text)

    def doctype(*_args: object) -> None:
        raise ForbiddenXML("a <!DOCTYPE> declaration", parser.CurrentLineNumber)

    def entity(*_args: object) -> None:
        raise ForbiddenXML("an <!ENTITY> declaration", parser.CurrentLineNumber)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = entity
    parser.UnparsedEntityDeclHandler = entity
    parser.Parse(data, True)
    return roots[0]
