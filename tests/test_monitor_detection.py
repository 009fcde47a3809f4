"""The fault monitor's detection (issue 4, item 1): wire format, HeartbeatSender and Detector, in one process.

Facts pinned: heartbeats are HMAC-SHA256-signed UDP datagrams with sequence numbers (issue 4 item 1; the
RHOSO InstanceHA heartbeat of ha-anchors 2.2 is HMAC-SHA256 over UDP too); a host is suspect after
suspect_after missed intervals and failed only when the second channel, active probes, agrees
(issue 4 item 1, ha-anchors 9 "dual-channel"); a host whose heartbeats are lost but which still answers
is not failed (ha-anchors 2.2: a fresh second channel means "do not fence"); detection ≤ 0.5 s with the
defaults (issue 4 item 1); quorum needs the share of hosts still heard (issue 4 item 4).
Everything runs on 127.0.0.1 with real sockets; timings are measured by the Detector's own clock.
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from novalite.config import MonitorOpts
from novalite.monitor.detection import READ_BATCH, Detector, HostFailed, HostReturned, HostSuspect
from novalite.monitor.heartbeat_sender import HeartbeatSender
from novalite.monitor.heartbeat_wire import (
    Beat,
    Leave,
    Probe,
    ProbeReply,
    decode,
    decode_beat,
    decode_probe,
    decode_probe_reply,
    encode_beat,
    encode_leave,
    encode_probe,
    encode_probe_reply,
)
from novalite.nudge import PAYLOAD as NUDGE
from novalite.nudge import parse_address

pytestmark = pytest.mark.no_database

KEY = b"k3y-of-the-cloud-0123456789abcdef"
OTHER_KEY = b"someone-else's-key-0123456789abc"
SUSPECT = 2 * 0.1  # suspect_after × heartbeat_interval, the defaults
PROBE_INTERVAL = 0.04
PROBING = 3 * PROBE_INTERVAL  # probe_attempts × probe_interval, the defaults
WINDOW = SUSPECT + PROBING  # last beat → HostFailed


# The wire format.

def test_each_message_decodes_to_what_was_encoded():
    assert decode(KEY, encode_beat(KEY, "compute1", 7, 123, incarnation=99)) == Beat("compute1", 99, 7, 123)
    assert decode(KEY, encode_probe(KEY, b"n" * 16, "compute1")) == Probe("compute1", b"n" * 16)
    assert decode(KEY, encode_probe_reply(KEY, "compute1", b"n" * 16, 99)) == ProbeReply("compute1", b"n" * 16, 99)
    assert decode_beat(KEY, encode_beat(KEY, "hôte-é", 1, 2)).host == "hôte-é"
    # Each decoder takes only its own kind.
    assert decode_probe(KEY, encode_beat(KEY, "compute1", 1, 2)) is None
    assert decode_beat(KEY, encode_probe_reply(KEY, "compute1", b"n" * 16)) is None
    assert decode_probe_reply(KEY, encode_probe(KEY, b"n" * 16, "compute1")) is None


def test_a_datagram_not_signed_with_the_key_or_damaged_in_any_byte_is_refused():
    beat = encode_beat(KEY, "compute1", 7, 123, incarnation=99)
    assert decode(OTHER_KEY, beat) is None
    for i in range(len(beat)):
        damaged = bytearray(beat)
        damaged[i] ^= 0x01
        assert decode(KEY, bytes(damaged)) is None, f"byte {i}"
    for cut in range(len(beat)):
        assert decode(KEY, beat[:cut]) is None, f"truncated to {cut}"
    for foreign in (b"", NUDGE, b"\x00" * 80, b"NLhb" + b"\xff" * 60, beat + b"x"):
        assert decode(KEY, foreign) is None


def test_host_names_are_1_to_255_bytes():
    with pytest.raises(ValueError):
        encode_beat(KEY, "", 0, 0)
    with pytest.raises(ValueError):
        encode_beat(KEY, "h" * 256, 0, 0)
    assert decode_beat(KEY, encode_beat(KEY, "h" * 255, 0, 0)).host == "h" * 255


def test_default_detection_is_0_32_s_after_the_last_beat_leaving_time_for_fencing_within_half_a_second():
    # issue 4 item 1: every interval and threshold configurable, "default detection ≤ 0.5 s"; the target is
    # forced_down visible ≤ 0.5 s after the failure, so detection leaves room for fencing and force-down.
    opts = MonitorOpts()
    assert (opts.heartbeat_interval, opts.suspect_after, opts.probe_attempts, opts.probe_interval) == (
        0.1, 2, 3, PROBE_INTERVAL)
    detector = Detector(KEY)  # the Detector's own defaults are the configuration's
    assert (detector.interval, detector.suspect_after, detector.probe_attempts, detector.probe_interval) == (
        opts.heartbeat_interval, opts.suspect_after, opts.probe_attempts, opts.probe_interval)
    assert detector.detection_window == pytest.approx(WINDOW) and WINDOW <= 0.35
    # Probing outlasts one beat interval: a monitor cut off from every host sees them all suspect before the
    # first one fails (issue 4 item 4, quorum).
    assert opts.probe_attempts * opts.probe_interval > opts.heartbeat_interval


# In-process helpers: a scripted host on a real UDP socket, and the detector's events with their times.

class ScriptedBeats(asyncio.DatagramProtocol):
    """A host whose beats and probe answers the test decides, speaking the real wire format."""

    def __init__(self, name: str, target: str, key: bytes = KEY, incarnation: int = 1):
        self.name, self.key, self.incarnation = name, key, incarnation
        self.target = parse_address(target)
        self.seq = 0
        self.answer = False
        self.probes: list[float] = []
        self.replies: list[bytes] = []
        self.sent: list[bytes] = []

    @classmethod
    async def start(cls, *args, **kwargs) -> ScriptedBeats:
        _, host = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: cls(*args, **kwargs), local_addr=("127.0.0.1", 0))
        return host

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        probe = decode_probe(self.key, data)
        if probe is not None and probe.host == self.name:
            self.probes.append(time.monotonic())
            if self.answer:
                reply = encode_probe_reply(self.key, self.name, probe.nonce, self.incarnation)
                self.transport.sendto(reply, addr)
                self.replies.append(reply)

    def send(self, data: bytes) -> None:
        self.transport.sendto(data, self.target)

    def beat(self, seq: int | None = None, incarnation: int | None = None) -> bytes:
        if seq is None:
            self.seq += 1
            seq = self.seq
        data = encode_beat(self.key, self.name, seq, time.time_ns(), self.incarnation if incarnation is None
                           else incarnation)
        self.send(data)
        self.sent.append(data)
        return data

    async def beat_for(self, seconds: float, interval: float = 0.1) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.beat()
            await asyncio.sleep(interval)

    def close(self) -> None:
        self.transport.close()


class Recorder:
    """Every event of a detector with the monotonic time it was taken."""

    def __init__(self, detector: Detector):
        self.events: list[tuple[float, object]] = []
        self._task = asyncio.create_task(self._collect(detector))

    async def _collect(self, detector: Detector) -> None:
        async for event in detector.events():
            self.events.append((time.monotonic(), event))

    def of(self, kind: type, host: str) -> list:
        return [event for _, event in self.events if isinstance(event, kind) and event.host == host]

    async def wait(self, kind: type, host: str, timeout: float = 3.0) -> object:
        deadline = time.monotonic() + timeout
        while not (found := self.of(kind, host)):
            if time.monotonic() > deadline:
                raise AssertionError(f"no {kind.__name__} for {host} within {timeout} s: {self.events}")
            await asyncio.sleep(0.005)
        return found[0]


async def _detector(**kwargs) -> tuple[Detector, Recorder]:
    detector = Detector(KEY, **kwargs)
    await detector.start("127.0.0.1", 0)
    return detector, Recorder(detector)


async def _settle() -> None:
    await asyncio.sleep(0.05)  # datagrams on loopback arrive at once; let the loop read them


# The Detector.

def test_beats_signed_with_another_key_make_no_host_known():
    async def main():
        detector, _ = await _detector()
        forger = await ScriptedBeats.start("compute1", detector.address, key=OTHER_KEY)
        for _ in range(5):
            forger.beat()
        forger.send(NUDGE)
        await _settle()
        assert detector.hosts() == {}
        assert detector.stats.rejected == 6 and detector.stats.beats == 0
        forger.close()
        detector.close()

    asyncio.run(main())


def test_replayed_or_reordered_beats_are_stale_and_keep_no_dead_host_alive():
    async def main():
        detector, events = await _detector()
        host = await ScriptedBeats.start("compute1", detector.address)
        captured = [host.beat(seq) for seq in (1, 2, 5)]
        host.beat(5)
        host.beat(3)
        await _settle()
        health = detector.hosts()["compute1"]
        assert (health.state, health.last_seq) == ("alive", 5)
        assert detector.stats.stale == 2
        # The host dies; someone replays its captured beats, signed and all, every 50 ms: it still fails.
        stale_before = detector.stats.stale
        deadline = time.monotonic() + WINDOW + 0.3
        while time.monotonic() < deadline and not events.of(HostFailed, "compute1"):
            for data in captured:
                host.send(data)
            await asyncio.sleep(0.05)
        failed = await events.wait(HostFailed, "compute1", timeout=0.1)
        assert failed.silence_seconds <= 0.5
        assert detector.stats.stale > stale_before
        host.close()
        detector.close()

    asyncio.run(main())


def test_a_restarted_agent_is_taken_from_seq_0_and_its_old_incarnation_is_refused_after():
    async def main():
        detector, events = await _detector()
        stop = asyncio.Event()
        first = HeartbeatSender("compute1", KEY, detector.address, 0.05)
        task = asyncio.create_task(first.run(stop))
        await asyncio.sleep(0.3)
        stop.set()
        await task
        before = detector.hosts()["compute1"]
        assert before.incarnation == first.incarnation and before.last_seq >= 3

        # The agent restarts: a new random incarnation, counting from 0 again; taken at once.
        stop = asyncio.Event()
        second = HeartbeatSender("compute1", KEY, detector.address, 0.05)
        task = asyncio.create_task(second.run(stop))
        await asyncio.sleep(0.12)
        after = detector.hosts()["compute1"]
        assert after.incarnation == second.incarnation != first.incarnation
        assert after.last_seq < before.last_seq and after.state == "alive"
        assert events.of(HostFailed, "compute1") == []

        # A beat of the incarnation it left behind, even with a higher seq, is a replay.
        stale = detector.stats.stale
        replayer = await ScriptedBeats.start("compute1", detector.address, incarnation=first.incarnation)
        replayer.beat(seq=before.last_seq + 1000)
        await _settle()
        assert detector.stats.stale == stale + 1
        assert detector.hosts()["compute1"].incarnation == second.incarnation
        stop.set()
        await task
        replayer.close()
        detector.close()

    asyncio.run(main())


def test_a_silent_host_is_suspect_after_2_intervals_then_failed_after_3_unanswered_probes():
    async def main():
        detector, events = await _detector()
        host = await ScriptedBeats.start("compute1", detector.address)
        await host.beat_for(0.25)
        host.beat()  # the last one: the silence starts now
        await _settle()
        last = detector.hosts()["compute1"]
        assert last.state == "alive"

        suspect = await events.wait(HostSuspect, "compute1")
        failed = await events.wait(HostFailed, "compute1")
        t_suspect = next(t for t, e in events.events if e is suspect)
        t_failed = next(t for t, e in events.events if e is failed)
        # Suspect after suspect_after × interval of silence; failed probe_attempts × probe_interval later.
        assert SUSPECT - 1e-3 <= t_suspect - last.last_beat_monotonic < SUSPECT + 0.1
        assert WINDOW - 1e-3 <= failed.silence_seconds <= 0.5
        assert failed.last_beat_wall == last.last_beat_wall
        assert failed.detected_wall - failed.last_beat_wall <= 0.5
        assert t_failed - t_suspect >= PROBING - 1e-3
        # The second channel was tried: 3 probes, 40 ms apart, to the address the beats came from.
        assert len(host.probes) == 3
        assert all(0.03 <= b - a <= 0.1 for a, b in zip(host.probes, host.probes[1:], strict=False))
        assert detector.hosts()["compute1"].state == "failed"
        assert len(events.of(HostFailed, "compute1")) == 1  # once per failure
        host.close()
        detector.close()

    asyncio.run(main())


def test_a_host_that_answers_probes_is_not_failed_until_it_stops_answering():
    async def main():
        detector, events = await _detector()
        host = await ScriptedBeats.start("compute1", detector.address)
        await host.beat_for(0.2)
        host.answer = True  # the heartbeat channel is lost, the host itself is up
        await events.wait(HostSuspect, "compute1")
        await asyncio.sleep(1.0)
        health = detector.hosts()["compute1"]
        assert events.of(HostFailed, "compute1") == []
        assert (health.state, health.answers_probes) == ("suspect", True)
        assert detector.alive_share() == 1.0  # still heard, on the second channel
        assert len(host.probes) >= 15  # probed all along, every probe_interval

        # Now it dies. Its earlier answers, replayed, answer no outstanding probe: they do not count.
        host.answer = False
        stopped = time.monotonic()
        while not events.of(HostFailed, "compute1") and time.monotonic() < stopped + 1.0:
            for reply in host.replies[-5:]:
                host.send(reply)
            await asyncio.sleep(0.01)
        failed = await events.wait(HostFailed, "compute1", timeout=0.1)
        t_failed = next(t for t, e in events.events if e is failed)
        assert PROBING - 1e-3 <= t_failed - stopped <= 0.25
        assert failed.silence_seconds > 1.0  # the heartbeat silence it had all along
        host.close()
        detector.close()

    asyncio.run(main())


def test_a_beat_queued_behind_a_backlog_saves_its_host_when_the_monitor_was_starved():
    # A monitor starved of CPU finds more datagrams waiting than one read takes; the host whose last probe
    # round is due may have a beat among them. No host is failed while a datagram of it waits unread: a
    # false failure fences a live host (issue 4 item 4, ha-anchors 6.2 "no false positives").
    async def main():
        # Long probe intervals, so the test knows the host's last round is still ahead when it starves the loop.
        detector, events = await _detector(probe_attempts=2, probe_interval=0.3)
        host = await ScriptedBeats.start("compute1", detector.address)
        host.beat()
        await events.wait(HostSuspect, "compute1")
        deadline = time.monotonic() + 3.0
        while len(host.probes) < 2 and time.monotonic() < deadline:  # the last probe: 0.3 s to its round
            await asyncio.sleep(0.005)
        assert len(host.probes) == 2 and events.of(HostFailed, "compute1") == []
        target = parse_address(detector.address)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as noise:
            for _ in range(3 * READ_BATCH):  # foreign datagrams: more than two reads take
                noise.sendto(b"not a heartbeat", target)
        host.beat()  # behind them all
        time.sleep(0.5)  # the detector's loop is starved past the host's last round
        await _settle()
        assert events.of(HostFailed, "compute1") == []
        assert detector.hosts()["compute1"].state == "alive"
        assert detector.stats.rejected >= 3 * READ_BATCH
        host.close()
        detector.close()

    asyncio.run(main())


def test_a_failed_host_returns_when_its_beats_resume():
    async def main():
        detector, events = await _detector()
        host = await ScriptedBeats.start("compute1", detector.address)
        await host.beat_for(0.2)
        await events.wait(HostFailed, "compute1")
        assert events.of(HostReturned, "compute1") == []
        host.beat()  # the same incarnation, the next seq: e.g. SIGCONT of a stopped agent
        returned = await events.wait(HostReturned, "compute1")
        assert returned.at >= events.of(HostFailed, "compute1")[0].detected_wall
        assert detector.hosts()["compute1"].state == "alive"
        # It can fail again later, and is reported again.
        await events.wait(HostSuspect, "compute1")
        await asyncio.sleep(WINDOW)
        await _settle()
        assert len(events.of(HostFailed, "compute1")) == 2
        host.close()
        detector.close()

    asyncio.run(main())


def test_a_beat_sent_before_the_failure_and_delivered_late_is_no_return():
    """A cut link or a full queue can hold a beat back and deliver it after the host was failed (and
    fenced): it was sent while the host was going silent, so it must not bring the host back. Only a beat
    its agent sent after the failure does — compared on the sender's own clock, so skew does not matter."""
    async def main():
        detector, events = await _detector()
        host = await ScriptedBeats.start("compute1", detector.address)
        await host.beat_for(0.2)
        last_sent = decode_beat(KEY, host.sent[-1]).sent_ns
        held_back = encode_beat(KEY, "compute1", host.seq + 1, last_sent + 100_000_000, host.incarnation)
        await events.wait(HostFailed, "compute1")
        stale = detector.stats.stale
        host.send(held_back)  # the next seq of its incarnation, sent 0.1 s after the last beat taken
        await _settle()
        assert detector.stats.stale == stale + 1
        assert detector.hosts()["compute1"].state == "failed" and events.of(HostReturned, "compute1") == []
        host.seq += 1
        host.beat()  # sent now, after the failure: the host is back
        await events.wait(HostReturned, "compute1")
        host.close()
        detector.close()

    asyncio.run(main())


def test_alive_share_counts_hosts_heard_and_expected_hosts_get_one_window_to_beat():
    async def main():
        detector, events = await _detector()
        assert detector.alive_share() == 0.0
        stops = {name: asyncio.Event() for name in ("c1", "c2", "c3")}
        tasks = {name: asyncio.create_task(HeartbeatSender(name, KEY, detector.address, 0.1).run(stop))
                 for name, stop in stops.items()}
        c4 = await ScriptedBeats.start("c4", detector.address)  # dies without a word (a clean stop would leave)
        c4_beating = asyncio.create_task(c4.beat_for(60))
        await asyncio.sleep(0.15)
        assert set(detector.hosts()) == {"c1", "c2", "c3", "c4"} and detector.alive_share() == 1.0

        c4_beating.cancel()
        await events.wait(HostFailed, "c4")
        c4.close()
        assert detector.alive_share() == 0.75

        detector.expect(["c1", "ghost"])  # c1 is known already; ghost is new and never beats
        assert detector.hosts()["ghost"].state == "alive" and detector.alive_share() == 4 / 5
        ghost = await events.wait(HostFailed, "ghost")
        assert ghost.last_beat_wall is None and WINDOW - 1e-3 <= ghost.silence_seconds <= 0.5
        assert detector.alive_share() == 3 / 5
        detector.forget(["ghost", "c4"])  # e.g. their services were deleted
        assert set(detector.hosts()) == {"c1", "c2", "c3"} and detector.alive_share() == 1.0
        for name in ("c1", "c2", "c3"):
            stops[name].set()
        await asyncio.gather(*tasks.values())
        detector.close()

    asyncio.run(main())


def test_when_every_host_falls_silent_at_once_none_counts_alive_by_the_first_failure():
    # The monitor's own link cut: all beats stop within one interval. By the time the first host fails,
    # every other one is already suspect (unanswered), so the quorum gate sees alive_share 0 (issue 4 item 4).
    async def main():
        detector, events = await _detector()
        hosts = [await ScriptedBeats.start(f"c{i}", detector.address) for i in range(5)]
        for _ in range(3):
            for host in hosts:
                host.beat()
                await asyncio.sleep(0.018)  # last beats spread over most of one interval
        assert detector.hosts()["c4"].last_beat_monotonic - detector.hosts()["c0"].last_beat_monotonic < 0.1
        await events.wait(HostFailed, "c0")
        assert detector.alive_share() == 0.0
        for host in hosts:
            await events.wait(HostFailed, host.name)
            host.close()
        detector.close()

    asyncio.run(main())


def test_heartbeat_sender_beats_every_interval_and_answers_only_its_own_signed_probes():
    async def main():
        monitor = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        monitor.bind(("127.0.0.1", 0))
        monitor.settimeout(2.0)
        address = f"127.0.0.1:{monitor.getsockname()[1]}"
        stop = asyncio.Event()
        sender = HeartbeatSender("compute1", KEY, address, 0.05)
        task = asyncio.create_task(sender.run(stop))

        def receive(count: int) -> list[tuple[object, tuple]]:
            got = []
            for _ in range(count):
                data, source = monitor.recvfrom(2048)
                got.append((decode(KEY, data), source))
            return got

        started = time.monotonic()
        beats = await asyncio.to_thread(receive, 10)
        elapsed = time.monotonic() - started
        assert [b.seq for b, _ in beats] == list(range(10))
        assert {b.incarnation for b, _ in beats} == {sender.incarnation}
        assert 0.4 <= elapsed <= 0.7  # 10 beats, 50 ms apart, the first at once
        source = beats[-1][1]

        # Probes to the socket the beats come from: its own is answered, others' and forged ones are not.
        monitor.sendto(encode_probe(OTHER_KEY, b"f" * 16, "compute1"), source)
        monitor.sendto(encode_probe(KEY, b"o" * 16, "compute2"), source)
        monitor.sendto(encode_probe(KEY, b"m" * 16, "compute1"), source)
        replies = [m for m, _ in await asyncio.to_thread(receive, 6) if isinstance(m, ProbeReply)]
        assert replies == [ProbeReply("compute1", b"m" * 16, sender.incarnation)]
        stop.set()
        await asyncio.wait_for(task, timeout=1.0)
        monitor.close()

    asyncio.run(main())


def test_a_cleanly_stopped_agent_leaves_and_is_never_failed_until_it_beats_again():
    # A clean stop (an operator's restart) is not a host failure: fencing a host for it would power off
    # running servers (ha-anchors 2.2: only a dead host is fenced). The agent says "leave" as it stops.
    async def main():
        detector, events = await _detector()
        other = await ScriptedBeats.start("compute2", detector.address)
        stop = asyncio.Event()
        sender = HeartbeatSender("compute1", KEY, detector.address, 0.1)
        task = asyncio.create_task(sender.run(stop))
        beating = asyncio.create_task(other.beat_for(3 * WINDOW))
        await asyncio.sleep(0.3)
        assert detector.hosts()["compute1"].state == "alive"
        stop.set()
        await asyncio.wait_for(task, timeout=1.0)
        await _settle()
        assert detector.hosts()["compute1"].state == "left"
        assert detector.alive_share() == 1.0  # a host that left does not count against the quorum
        await asyncio.sleep(2 * WINDOW)
        assert events.of(HostSuspect, "compute1") == [] and events.of(HostFailed, "compute1") == []
        # It comes back as a new incarnation: alive again, and no "returned" (it never failed).
        again = HeartbeatSender("compute1", KEY, detector.address, 0.1)
        stop2 = asyncio.Event()
        task2 = asyncio.create_task(again.run(stop2))
        await asyncio.sleep(0.2)
        assert detector.hosts()["compute1"].state == "alive"
        assert events.of(HostReturned, "compute1") == []
        stop2.set()
        await task2
        await beating
        other.close()
        detector.close()

    asyncio.run(main())


def test_a_leave_that_is_forged_stale_or_of_another_incarnation_changes_nothing():
    async def main():
        detector, events = await _detector()
        host = await ScriptedBeats.start("compute1", detector.address)
        host.beat()
        host.beat()
        await _settle()
        assert decode(KEY, encode_leave(KEY, "compute1", 9, 1, 7)) == Leave("compute1", 7, 9, 1)
        host.send(encode_leave(OTHER_KEY, "compute1", host.seq + 1, time.time_ns(), host.incarnation))
        host.send(encode_leave(KEY, "compute1", host.seq, time.time_ns(), host.incarnation))  # not above the seq
        host.send(encode_leave(KEY, "compute1", host.seq + 5, time.time_ns(), host.incarnation + 1))
        await _settle()
        assert detector.hosts()["compute1"].state == "alive"
        await events.wait(HostFailed, "compute1")  # it still fails when it goes silent
        host.close()
        detector.close()

    asyncio.run(main())


def test_an_agent_with_a_monitor_address_but_no_key_refuses_to_start(tmp_path):
    # Unsigned beats would be worthless: the key is part of the channel (issue 4 item 1).
    from novalite.cli.main import main

    (tmp_path / "agent-token").write_text("t0ken\n")
    conf = tmp_path / "novalite.conf"
    conf.write_text(f"[api]\nauth_strategy = noauth2\nagent_token_file = {tmp_path / 'agent-token'}\n"
                    "[monitor]\nheartbeat_address = 127.0.0.1:9\n")
    with pytest.raises(SystemExit, match=r"heartbeat_address needs \[monitor\] heartbeat_key_file"):
        main(["compute", "--host", "compute1", "--config-file", str(conf)])
