"""What callers hear when a call cannot go where it was meant to.

Stock Asterisk sounds (asterisk-core-sounds-en), as ARI media URIs. Refusals are
played as early media (183, the call is never answered) and then released with a
hangup cause that carriers understand.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Refusal:
    media: tuple[str, ...]
    reason: str  # ARI hangup reason -> Q.850 cause -> SIP status

    @property
    def uris(self) -> list[str]:
        return [f"sound:{name}" for name in self.media]


# "The number you have dialed is not in service." -> cause 1, SIP 404
NOT_IN_SERVICE = Refusal(("ss-noservice",), "unallocated")
# "The number you are calling is not answering." -> cause 19/480
NO_ANSWER = Refusal(("number-not-answering",), "no_answer")
# "Nobody is available to take your call." -> cause 20-ish/480
UNAVAILABLE = Refusal(("vm-nobodyavail",), "no_answer")
# "... is on the phone." -> cause 17, SIP 486
BUSY = Refusal(("vm-isonphone",), "busy")
# "All circuits are busy now. Please try your call later." -> cause 34, SIP 503
SERVICE_UNAVAILABLE = Refusal(("all-circuits-busy-now", "please-try-call-later"), "congestion")
# The organisation's credits cannot pay for the call -> cause 34, SIP 503: to the
# caller it is a network condition (the organisation's balance is not their business).
NO_CREDIT = Refusal(("all-circuits-busy-now", "please-try-call-later"), "congestion")
# "Your call cannot be completed as dialed." -> cause 1, SIP 404
CANNOT_COMPLETE = Refusal(("cannot-complete-as-dialed",), "unallocated")
