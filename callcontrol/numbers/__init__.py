"""The life of a number: search and buy from the catalogue, assign to users, rent, release.

service.py  NumbersService: search, buy, release, assign, unassign (over the
            catalogue port, the wallet and the database)
rental.py   Renewals: each month's rent on the anniversary, grace, suspension,
            release; ``renew_due`` is what the scheduler in ``serve`` and
            ``callcontrol numbers renew --due`` run
"""
