"""The app's log lines that the PBX tests rely on: few, stable, pinned by a unit test.

The PBX tests assert outcomes by querying the database (call records, the wallet and
its audit). They read the app's log only for the lines below: the events they wait
on, and what nothing else can show. ``tests/unit/calls/test_calls_log_contract.py``
makes each line the way the app does and matches it with these very patterns, so a
change of wording fails one fast unit test, not the PBX suite.

Events
    READY        ``provisioned N users' SIP endpoints``: after every (re)connect to
                 ARI, before the phones can register (``AppProcess.start`` waits for it).
    RELEASED     ``call <id> released: T tasks left, L live calls, S channel
                 subscriptions``: exactly once per call an app process ran, when the
                 call's task is over; its record is then complete and its charge
                 settled, unless the database was down (a retry completes them later).
    CONNECTED    ``[<id>] <logger>: connected <caller> with <user>``: both legs are
                 bridged and the call's first charge is held (mid-call synchronisation).

Observables that no query can see
    WARNED       ``warned the <role>: the credits end in N s``: the low-credit prompt.
    IVR_STEP     ``[<id>] <logger>: ivr <flow>/<node>: <step>`` (DEBUG): the flow
                 interpreter's trace; the steps read as ``callcontrol ivr simulate``
                 prints them (their texts are pinned by tests/unit/ivr).
    FLOW_SERVES  ``flow <name> (version <v>) now serves new calls``: an edit is live.
    FLOW_ERROR   ``<file>:<line>:<col>: <message>``: a refused flow file's problem, on
                 its own line, as ``callcontrol ivr validate`` prints it.
    MEDIA_SERVED ``serving <file> to <address>``: Asterisk fetched a prompt over HTTP.
    REPLACED     ``error: ARI application '<app>' was replaced``: why an instance
                 stopped when another took its ARI application over.
    AMI_REFUSED  ``ERROR ... AMI login refused for user <user> at <host:port>``: a wrong
                 AMI secret, said (panoramisk alone only reconnects, silently).
    PBX_END      ``... at <time> (the PBX's CDR record)``: a call that ended while no
                 app ran was settled at the end the PBX recorded (CDR or AMI).

Several processes on one PBX (setting workers; tests/pbx/test_workers.py): every line's
logger is followed by ``@w<K>`` (``callcontrol.calls.routed@w2:``), which the patterns
above allow (a logger is one word).
    FROZEN         ``N objects of start-up frozen out of the garbage collector's reach``:
                   before it takes calls (callcontrol/startup.py), in every process.
    ARI_APP        ``connected to Asterisk ARI at <url> as app '<app>'``: a worker's
                   application is connected (after every (re)connect).
    WORKER_STARTED ``worker <K> started (pid <pid>)``: worker 1 started worker K.
    WORKER_EXITED  ``worker <K> (pid <pid>) exited with <signal N|status N>: restarting
                   it[ in N s]``: a worker died; worker 1 starts it again.
    WORKER_STOPPED ``worker <K> stopped``: worker 1 stopped it as it stopped itself.

`callcontrol agi` (tests/pbx/test_agi.py; pinned by tests/unit/agi/test_agi_log_contract.py)
    AGI_LISTENING  ``FastAGI server listening on <host>:<port>``: ready for requests.
    AGI_AUTHORIZED ``[<id>] <logger>: authorized: holding <credits>, the PBX ends the
                   call after N s``: the call's credits are held, its limit known.
    AGI_REFUSED    ``[<id>] <logger>: refused (<status>)``: authorize said no.
    AGI_SETTLED    ``[<id>] <logger>: AGI call settled: cost N micro-credits``: charged,
                   hold released, record closed (once per call).
"""

from __future__ import annotations

import re

READY = re.compile(r"provisioned (?P<users>\d+) users' SIP endpoints")
RELEASED = re.compile(
    r"call (?P<call_id>\w+) released: (?P<tasks>\d+) tasks left, (?P<live>\d+) live calls, "
    r"(?P<subscriptions>\d+) channel subscriptions"
)
CONNECTED = re.compile(r"\[(?P<call_id>\w+)\] \S+: connected (?P<caller>\S+) with (?P<user>\S+)$")
WARNED = re.compile(r"warned the (?P<role>\w+): the credits end in (?P<seconds>\d+) s")
IVR_STEP = re.compile(
    r"\[(?P<call_id>\w+)\] \S+: ivr (?P<flow>[^/\s]+)/(?P<node>\S+): (?P<step>.*)$"
)
FLOW_SERVES = re.compile(r"flow (?P<name>\S+) \(version (?P<version>\w+)\) now serves new calls")
FLOW_ERROR = re.compile(r"^(?P<file>\S+):(?P<line>\d+):(?P<column>\d+): (?P<message>.*)$")
MEDIA_SERVED = re.compile(r"serving (?P<file>\S+) to (?P<address>\S+)$")
AMI_REFUSED = re.compile(
    r" ERROR .*AMI login refused for user (?P<user>\S+) at (?P<address>[^\s:]+:\d+)"
)
PBX_END = re.compile(r" at (?P<time>\S+) \(the PBX's (?P<source>CDR|AMI) record\)$")
REPLACED = re.compile(r"^error: ARI application '(?P<app>[^']+)' was replaced")
AGI_LISTENING = re.compile(r"FastAGI server listening on (?P<listen>\S+)$")
AGI_AUTHORIZED = re.compile(
    r"\[(?P<call_id>agi\w+)\] \S+: authorized: holding \S+, the PBX ends the call after "
    r"(?P<seconds>\d+) s$"
)
AGI_REFUSED = re.compile(r"\[(?P<call_id>agi\w+)\] \S+: refused \((?P<status>\w+)\)$")
AGI_SETTLED = re.compile(
    r"\[(?P<call_id>agi\w+)\] \S+: AGI call settled: cost (?P<cost>\d+) micro-credits$"
)
FROZEN = re.compile(r"(?P<objects>\d+) objects of start-up frozen out of the garbage collector")
ARI_APP = re.compile(r"connected to Asterisk ARI at (?P<url>\S+) as app '(?P<app>[^']+)'$")
WORKER_STARTED = re.compile(r"worker (?P<worker>\d+) started \(pid (?P<pid>\d+)\)$")
WORKER_EXITED = re.compile(
    r"worker (?P<worker>\d+) \(pid (?P<pid>\d+)\) exited with (?P<how>signal|status) "
    r"(?P<code>\d+): restarting it"
)
WORKER_STOPPED = re.compile(r"worker (?P<worker>\d+) stopped$")
