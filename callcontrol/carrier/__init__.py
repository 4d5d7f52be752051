"""Where numbers come from: the number catalogue port and its adapters.

    port.py            NumberCatalogue (the one behaviour of every number source:
                       coverage, search, reserve, acquire, release), Offer, Reservation
    inventory.py       InventoryCatalogue: the default adapter, an inventory of numbers in
                       our own database (Kazoo's "managed" carrier)
    catalogue_file.py  the file admins or operators import into that inventory
                       (``callcontrol numbers catalogue import FILE``)

Like Kazoo's ``knm_carriers`` (find, acquire, disconnect, the managed local inventory
beside the real carriers), ``numbers.service.NumbersService`` only ever talks to the
port, so the inventory and a real carrier are interchangeable in the composition root.

How a real carrier adapter (Twilio- or Telnyx-style APIs) plugs in: a module
``carrier/<name>.py`` with a class implementing ``NumberCatalogue`` on aiohttp, its
API key in the settings, chosen in ``services.py``:

- ``coverage``: the carrier's list of countries and number types it sells (Twilio:
  ``GET /AvailablePhoneNumbers``; Telnyx: ``GET /country_coverage``), each with our
  prices from the carrier's price list plus the organisation's margin.
- ``search``: the carrier's inventory search (Twilio: ``GET
  /AvailablePhoneNumbers/{country}/{Local|Mobile|TollFree}?AreaCode=&Contains=&PageSize=``;
  Telnyx: ``GET /available_phone_numbers?filter[country_code]=&filter[phone_number_type]=
  &filter[national_destination_code]=&filter[phone_number][contains]=&filter[limit]=``),
  mapped to ``Offer``.
- ``reserve``: Telnyx holds a number (``POST /number_reservations``, with its own
  expiry); Twilio has no reservation, so the adapter keeps a short local hold and
  the order may still fail at ``acquire``.
- ``acquire``: the order (Twilio: ``POST /IncomingPhoneNumbers``; Telnyx: ``POST
  /number_orders``), pointing the number's voice traffic at our trunk. A failed order
  raises ``Conflict``: ``NumbersService.buy`` then refunds the purchase.
- ``release``: the carrier's disconnect (Twilio: ``DELETE /IncomingPhoneNumbers/{sid}``;
  Telnyx: ``DELETE /phone_numbers/{id}``); the carrier does its own ageing.

Errors are translated at the adapter (``raise Conflict(...) from exc``); timeouts
and unreachable APIs as ``StoreError``-like ``CallControlError`` subclasses, never
library exceptions.
"""
