"""Telnet option negotiation (RFC 854/855): split IAC commands from text and refuse every option.

Refusing (DO x → WONT x, WILL x → DONT x) is always a valid answer, and it makes servers fall
back to plain NVT text, so the login banner arrives without emulating a terminal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240

_VERBS = {DO: "DO", DONT: "DONT", WILL: "WILL", WONT: "WONT"}
#: option names worth showing in evidence (RFC 856-1572); others appear as numbers
OPTION_NAMES = {
    0: "binary",
    1: "echo",
    3: "suppress-go-ahead",
    5: "status",
    6: "timing-mark",
    24: "terminal-type",
    31: "naws",
    32: "terminal-speed",
    33: "lflow",
    34: "linemode",
    35: "x-display-location",
    36: "old-environ",
    37: "authentication",
    38: "encrypt",
    39: "new-environ",
}


@dataclass
class TelnetParser:
    """Feed bytes; collects printable text and the options the server asked about."""

    text: bytearray = field(default_factory=bytearray)
    options: list[str] = field(default_factory=list)
    #: IAC followed by a byte that is no Telnet command: the peer is not speaking Telnet
    invalid: int = 0
    _pending: bytes = b""
    _in_subnegotiation: bool = False

    def feed(self, data: bytes) -> bytes:
        """Consume bytes from the server; return the refusals to send back."""
        buf = self._pending + data
        self._pending = b""
        reply = bytearray()
        i = 0
        while i < len(buf):
            byte = buf[i]
            if self._in_subnegotiation:
                if byte == IAC and i + 1 < len(buf) and buf[i + 1] == SE:
                    self._in_subnegotiation = False
                    i += 2
                    continue
                if byte == IAC and i + 1 >= len(buf):
                    self._pending = buf[i:]
                    break
                i += 1
                continue
            if byte != IAC:
                self.text.append(byte)
                i += 1
                continue
            if i + 1 >= len(buf):
                self._pending = buf[i:]
                break
            cmd = buf[i + 1]
            if cmd == IAC:  # escaped 0xFF data byte
                self.text.append(IAC)
                i += 2
            elif cmd in _VERBS:
                if i + 2 >= len(buf):
                    self._pending = buf[i:]
                    break
                option = buf[i + 2]
                if len(self.options) < 32:
                    self.options.append(f"{_VERBS[cmd]} {OPTION_NAMES.get(option, str(option))}")
                if cmd == DO:
                    reply += bytes((IAC, WONT, option))
                elif cmd == WILL:
                    reply += bytes((IAC, DONT, option))
                i += 3
            elif cmd == SB:
                self._in_subnegotiation = True
                i += 2
            else:  # NOP, GA, AYT and friends carry no option
                if cmd < SE:
                    self.invalid += 1
                i += 2
        return bytes(reply)

    @property
    def negotiated(self) -> bool:
        return bool(self.options)

    @property
    def well_formed(self) -> bool:
        """Negotiated, with no command that Telnet does not have."""
        return self.negotiated and not self.invalid
