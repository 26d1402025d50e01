"""agentlog's mitmproxy addons, one concern each, in pipeline order:

DialByName -> PolicyGate -> Router -> Recorder, with Lifecycle announcing and closing.
"""
