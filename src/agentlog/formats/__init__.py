"""What the read side shows: terminal lines, HAR, exchanges with their bodies (pure
but for reading stored bodies). Commands and the UI both use these."""
