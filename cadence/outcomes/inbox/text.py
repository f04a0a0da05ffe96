"""The new words of a reply: HTML turned to text, quoted history and signatures cut away.

A lead's history and the owner's task ("Reply from Ann Lee: <first line>") must show what
the lead wrote, not our own email quoted back under it, and the unsubscribe check must not
fire on our own footer quoted in a reply. Mail clients mark quotes differently: Gmail and
Apple Mail write an "On ... wrote:" line (in the reader's language) and `>` lines, Outlook a
"From: / Sent:" block or an "-----Original Message-----" line, and in HTML a `gmail_quote`
div, a `blockquote type="cite"` or a `divRplyFwdMsg` div. What follows any of them is history.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCK_TAGS = frozenset(
    {"p", "div", "br", "li", "ul", "ol", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "pre", "section"}
)
_DROPPED_TAGS = frozenset({"script", "style", "head", "title", "blockquote"})
_QUOTE_CLASSES = ("gmail_quote", "yahoo_quoted", "moz-cite-prefix", "protonmail_quote", "zmail_extra")
_QUOTE_IDS = ("appendonsend", "divrplyfwdmsg", "reply-intro", "ms-outlook-mobile-signature")
_VOID_TAGS = frozenset({"br", "hr", "img", "meta", "link", "input", "col", "area", "base", "wbr", "source"})


class _TextParser(HTMLParser):
    """Collects an HTML body's visible text, leaving out quoted history and everything after it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skipping: list[str] = []  # the tags whose subtree is being left out, innermost last
        self.done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.done:
            return
        if self.skipping:
            if tag not in _VOID_TAGS:
                self.skipping.append(tag)
            return
        values = {k: (v or "").lower() for k, v in attrs}
        if values.get("id", "") in _QUOTE_IDS:
            self.done = True  # Outlook: everything from here on is the quoted thread
            return
        if tag in _DROPPED_TAGS or any(c in values.get("class", "") for c in _QUOTE_CLASSES):
            if tag not in _VOID_TAGS:
                self.skipping.append(tag)
            return
        if tag in _BLOCK_TAGS:
            self.out.append("\n\n" if tag == "p" else "\n")

    def handle_endtag(self, tag: str) -> None:
        if self.skipping:
            if tag in self.skipping:
                while self.skipping and self.skipping.pop() != tag:
                    pass
            return
        if not self.done and tag in _BLOCK_TAGS:
            self.out.append("\n\n" if tag == "p" else "\n")

    def handle_data(self, data: str) -> None:
        if not self.done and not self.skipping:
            self.out.append(re.sub(r"[ \t\r\n\f\u00a0]+", " ", data))


def html_to_text(html: str) -> str:
    """The visible text of an HTML body, one line per block, quoted history left out."""
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    lines = (line.strip() for line in "".join(parser.out).splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


_LANG_WROTE = (
    r"wrote|schrieb|a écrit|escribió|escreveu|schreef|ha scritto|skrev|kirjoitti|napisał|написал|yazdı"
    r"|wrote the following"
)
_ATTRIBUTION = re.compile(
    rf"^\s*(?:on|am|le|el|em|op|il|den|på|w dniu)\b.{{0,240}}?(?:{_LANG_WROTE})(?:\s*:?|\s.{{0,120}}:)\s*$",
    re.IGNORECASE,
)  # "On ... wrote:", and "Am ... schrieb Alice Smith <alice@acme.example>:" with the name after the verb
_ADDRESS_ATTRIBUTION = re.compile(
    rf"^.{{0,200}}<[^>\s]+@[^>\s]+>.{{0,80}}(?:{_LANG_WROTE})\b.{{0,80}}:\s*$", re.IGNORECASE
)  # "Alice Smith <alice@acme.example> schrieb am Fr., 20. Nov. 2026, 15:05:", on one line
_SEPARATOR = re.compile(
    r"^\s*-{2,}\s*(?:original message|ursprüngliche nachricht|originalnachricht|message d'origine|mensaje original"
    r"|mensagem original|oorspronkelijk bericht|messaggio originale|originalmeddelande|forwarded message"
    r"|message transféré|weitergeleitete nachricht|mensaje reenviado)\s*-{2,}\s*$"
    r"|^\s*begin forwarded message:\s*$|^\s*_{20,}\s*$",
    re.IGNORECASE,
)
_HEADER_FROM = re.compile(r"^\s*\*?(?:from|von|de|van|da|från|fra|od)\s*\*?\s*:\s*\S", re.IGNORECASE)
_HEADER_NEXT = re.compile(
    r"^\s*\*?(?:sent|date|gesendet|datum|envoyé|enviado|enviada|verzonden|inviato|data|skickat|sendt|to|an|à|para|aan|a"
    r"|subject|betreff|objet|asunto|assunto|onderwerp|oggetto|cc)\s*\*?\s*:",
    re.IGNORECASE,
)
_SIGNATURE_MARK = re.compile(
    r"^(?:-- ?|—|sent from my \S.*|sent from (?:outlook|mail) for \S.*|get outlook for \S.*|sent via \S.*"
    r"|von meinem \S.* gesendet|gesendet von meinem \S.*|envoyé de mon \S.*|envoyé depuis mon \S.*"
    r"|enviado desde mi \S.*|enviado do meu \S.*|enviado de meu \S.*|verzonden (?:vanaf|met) mijn \S.*"
    r"|inviato da(?:l mio)? \S.*)$",
    re.IGNORECASE,
)
_SIGN_OFF = re.compile(
    r"^(?:(?:best|kind|warm|many|with)?\s*(?:regards|wishes|thanks)|best|cheers|thanks|thank you|thx|br|all the best"
    r"|mit freundlichen grüßen|mit freundlichen grüssen|viele grüße|beste grüße|freundliche grüße|liebe grüße|lg|vg|mfg"
    r"|cordialement|bien cordialement|bien à vous|salutations|saludos|un saludo|saludos cordiales|atentamente"
    r"|atenciosamente|abraços|cumprimentos|met vriendelijke groet(?:en)?|vriendelijke groet(?:en)?|groeten|groet"
    r"|cordiali saluti|distinti saluti|saluti|un saluto)\s*[,.!]*$",
    re.IGNORECASE,
)
_SIGNATURE_TAIL = 8  # a sign-off with more lines than this after it is part of the message, not its end


def _history_starts(lines: list[str]) -> int:
    """The index of the first line of quoted history (an attribution, a separator, a header block)."""
    for i, line in enumerate(lines):
        if _SEPARATOR.match(line):
            return i
        if len(line) < 300 and _ADDRESS_ATTRIBUTION.match(line):
            return i
        for n in (1, 2, 3):  # clients wrap a long attribution over two or three lines
            candidate = " ".join(part.strip() for part in lines[i : i + n])
            if len(candidate) < 400 and _ATTRIBUTION.match(candidate):
                return i
        if _HEADER_FROM.match(line) and any(_HEADER_NEXT.match(nxt) for nxt in lines[i + 1 : i + 4]):
            return i
    return len(lines)


def _signature_starts(lines: list[str]) -> int:
    """The index where the signature begins: a "-- " line, a mobile footer, or a closing sign-off."""
    content = [i for i, line in enumerate(lines) if line.strip()]
    for i in content:
        if _SIGNATURE_MARK.match(lines[i].rstrip()) or lines[i].rstrip() in {"--", "-- "}:
            return i
    for i in content[1:]:  # a sign-off on the first line ("Thanks, yes") is the message itself
        tail = [j for j in content if j > i]
        if _SIGN_OFF.match(lines[i].strip()) and len(tail) <= _SIGNATURE_TAIL:
            return i
    return len(lines)


def strip_quoted(text: str) -> str:
    """The words the sender wrote in this message: no quoted history, no `>` lines, no signature."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = lines[: _history_starts(lines)]
    lines = [line for line in lines if not line.lstrip().startswith(">")]
    lines = lines[: _signature_starts(lines)]
    out = "\n".join(line.rstrip() for line in lines)
    return re.sub(r"\n{3,}", "\n\n", out).strip()
