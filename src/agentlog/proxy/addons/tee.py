"""A stream tap: passes every chunk on untouched while keeping the first `cap` bytes."""


class BodyTee:
    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.kept = bytearray()
        self.size = 0

    def __call__(self, chunk: bytes) -> bytes:
        self.size += len(chunk)
        room = self.cap - len(self.kept)
        if room > 0:
            self.kept += chunk[:room]
        return chunk

    @property
    def truncated(self) -> bool:
        return self.size > len(self.kept)
