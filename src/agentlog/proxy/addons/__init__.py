"""agentlog's mitmproxy addons, one concern each, run in this order:

ConnectionGuard -> StreamGuard -> DialByName -> PolicyGate -> Router -> Recorder ->
TcpRecorder, with Lifecycle announcing and closing, and the guards' Tally last.
"""


class Pipeline:
    """Our addons as one entry in mitmproxy's chain.

    mitmproxy pays a fixed price per chain entry for every event it triggers
    (a context manager, a coroutine, a hook lookup), whether or not the entry
    has that hook; as one entry with children, ours cost it once. mitmproxy
    still calls every child's hooks, in order (see AddonManager.traverse).
    """

    def __init__(self, *addons: object, name: str = "pipeline") -> None:
        self.addons = list(addons)
        self.name = name  # mitmproxy's name for the entry: one per chain
