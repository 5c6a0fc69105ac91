"""Why a .ckpt was refused: read its pickle opcodes (never execute them) and name what they
would import. torch's weights_only loader says the same thing for random bytes and for a
pickle that would run code; this tells the two apart."""

from __future__ import annotations

import io
import pickletools
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

# what a plain tensor checkpoint's pickle imports (torch.save of tensors, dicts, numbers, strings)
SAFE_MODULES = ("torch", "collections", "_codecs", "numpy.core.multiarray", "numpy._core.multiarray", "numpy")
SCAN_LIMIT = 256 * 1024**2  # a legacy file's pickles come first; its tensor bytes need no reading
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}


@dataclass
class PickleReport:
    is_pickle: bool  # its first pickle parsed as opcodes
    imports: list[str] = field(default_factory=list)  # "module.name" of every global it loads
    problem: str = ""  # why parsing stopped early, if it did

    @property
    def code_running(self) -> list[str]:
        """The imports a tensor checkpoint never needs (posix.system, builtins.eval, ...)."""
        return [name for name in self.imports if not name.startswith(tuple(m + "." for m in SAFE_MODULES))]


def scan_pickles(data: bytes) -> PickleReport:
    """Every pickle in `data`, one after another (torch's legacy format writes several)."""
    stream = io.BytesIO(data)
    report = PickleReport(is_pickle=False)
    while stream.tell() < len(data):
        strings: list[str] = []
        try:
            for opcode, argument, _ in pickletools.genops(stream):
                if opcode.name in _STRING_OPS:
                    strings.append(str(argument))
                elif opcode.name == "GLOBAL":
                    report.imports.append(str(argument).replace(" ", "."))
                elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                    report.imports.append(f"{strings[-2]}.{strings[-1]}")
        except Exception as error:  # noqa: BLE001 - any parse failure means "not (more) pickle"
            report.problem = f"{type(error).__name__}: {error}"
            return report
        report.is_pickle = True
        if stream.tell() < len(data) and data[stream.tell():stream.tell() + 1] != b"\x80":
            break  # legacy files follow their pickles with raw tensor bytes
    return report


def scan_checkpoint(path: Path) -> PickleReport:
    """The pickle inside a torch zip archive (its data.pkl), or the file itself."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                members = [name for name in archive.namelist() if name.endswith("data.pkl")]
                if not members:
                    return PickleReport(is_pickle=False, problem="a zip archive without data.pkl")
                return scan_pickles(archive.read(members[0]))
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            return PickleReport(is_pickle=False, problem=f"a damaged zip archive: {error}")
    with open(path, "rb") as handle:
        return scan_pickles(handle.read(SCAN_LIMIT))
