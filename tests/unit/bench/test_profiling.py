"""The py-spy summary: where the samples are, by thread role, own time and inclusive time."""

from bench.profiling import summarise

FOLDED = [
    "thread (11);<module> (relay/__main__.py:1);_pump (relay/service.py:363);"
    "encode_change (change_contract/encode.py:91) 30",
    "thread (11);<module> (relay/__main__.py:1);_pump (relay/service.py:370) 10",
    "thread (12);_bootstrap (threading.py:1);_bootstrap_inner (threading.py:2);run "
    "(threading.py:3);_send (relay/forwarder.py:200);_make_api_call (botocore/client.py:9) 60",
    "not a stack line",
]


def test_summary_splits_reader_and_sender_threads():
    text = summarise(FOLDED)

    assert text.startswith("100 samples")
    assert "60.0%       60  _send (relay/forwarder.py)" in text
    assert "40.0%       40  <module> (relay/__main__.py)" in text


def test_own_time_is_the_top_frame_and_inclusive_counts_each_stack_once():
    text = summarise(FOLDED)
    own = text.split("Own time")[1].split("Inclusive")[0]
    inclusive = text.split("Inclusive time")[1]

    assert "60.0%       60  _make_api_call (botocore/client.py)" in own
    assert "30.0%       30  encode_change (change_contract/encode.py)" in own
    assert "10.0%       10  _pump (relay/service.py)" in own
    assert "40.0%       40  _pump (relay/service.py)" in inclusive


def test_no_samples_is_said_plainly():
    assert summarise([]) == "no samples\n"
