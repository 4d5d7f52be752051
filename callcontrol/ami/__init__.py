"""The AMI adapter (Asterisk's manager interface, through panoramisk's ``Manager``).

client.py   AmiSession (one logged-in connection; a refused login is an error, not
            silence) and AmiFeed (kept connected with capped exponential back-off)
health.py   the PBX's health for ``callcontrol pbx status``: uptime, reload, calls,
            channels, endpoints registered
records.py  when a call that ended unseen really ended: the PBX's CDR file, else
            AMI Hangup events; the crash rule's settlement uses it
"""
