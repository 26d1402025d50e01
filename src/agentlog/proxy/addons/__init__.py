"""agentlog's mitmproxy addons, one concern each, in pipeline order:

Router -> PolicyGate -> Recorder, with Lifecycle announcing and closing.
"""
