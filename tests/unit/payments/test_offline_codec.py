"""The offline provider's memory survives a trip through JSON: after a "restart" the same
idempotency key gets the first answer, and nothing new is charged."""

from __future__ import annotations

from callcontrol.payments.offline import OfflineProvider
from callcontrol.payments.offline_codec import decode_state, encode_state
from callcontrol.payments.offline_state import OfflineState
from callcontrol.payments.port import CheckoutRequest, OffSessionCharge, Succeeded, Unknown

SECRET = "whsec_codec_test"


async def test_every_kind_of_record_reads_back_equal() -> None:
    state = OfflineState()
    provider = OfflineProvider(SECRET, state=state)
    customer = await provider.ensure_customer("org", "Acme")
    for card in ("visa", "declined", "authentication_required", "timeout_after_charge"):
        setup = await provider.start_card_setup(customer, f"setup-{card}")
        method = provider.complete_card_setup(setup.client_secret, card)
        await provider.charge_off_session(
            OffSessionCharge(customer, method.provider_ref, 500, "eur", "x", card, {"a": "b"})
        )
    checkout = await provider.start_checkout(
        CheckoutRequest(customer, 700, "eur", "t", "co", {}, frozenset({"bank_transfer"}))
    )
    provider.complete_checkout(checkout.client_secret, "bank_transfer")

    again = decode_state(encode_state(state))

    assert again == state
    assert encode_state(again) == encode_state(state)


async def test_a_lost_answer_is_found_again_after_a_restart() -> None:
    state = OfflineState()
    provider = OfflineProvider(SECRET, state=state)
    customer = await provider.ensure_customer("org", "Acme")
    setup = await provider.start_card_setup(customer, "setup")
    method = provider.complete_card_setup(setup.client_secret, "timeout_after_charge")
    request = OffSessionCharge(customer, method.provider_ref, 500, "eur", "x", "key-1", {})
    assert isinstance(await provider.charge_off_session(request), Unknown)

    restarted = OfflineProvider(SECRET, state=decode_state(encode_state(state)))
    answer = await restarted.charge_off_session(request)

    assert isinstance(answer, Succeeded)
    assert len(decode_state(encode_state(state)).payments) == 1  # charged once
