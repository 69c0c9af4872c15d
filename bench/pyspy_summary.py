"""Summarise a py-spy profile of the stream worker (``py-spy record --format raw``: one collapsed stack per line).

    py-spy record --pid PID --rate 100 --duration 45 --format raw -o worker.raw [--gil]
    python bench/pyspy_summary.py worker.raw

Prints, as shares of all samples: which thread the samples were in (the event loop or the worker threads of
``asyncio.to_thread``), the inclusive share of the functions that matter for the stream worker, and the top
functions by self time. Without ``--idle`` py-spy records only threads that were running; with ``--gil``
only the thread holding the GIL, which for this GIL-bound process is what limits throughput.
"""

from __future__ import annotations

import re
import sys
from collections import Counter

#: (label, frame pattern, exclude pattern): share of samples with a frame matching and none matching exclude
INCLUSIVE = [
    ("StreamWorker.handle (a chunk: split by partition, Message objects, await process, emit)",
     r"^StreamWorker\.handle ", None),
    ("PartitionProcessor.process (to_thread)", r"^PartitionProcessor\.process ", None),
    ("  check_message (HMAC, decode, header checks)", r"^check_message ", None),
    ("    HMAC-SHA256", r"\(hmac\.py", None),
    ("    decode_batch", r"^decode_batch ", None),
    ("  kernels: Accumulator.absorb_readings", r"^Accumulator\.absorb_readings ", None),
    ("    combine (merge the chunk into the whole state)", r"^combine ", None),
    ("  SeqTracker", r"^SeqTracker\.", None),
    ("  _publish (due hours)", r"^PartitionProcessor\._publish ", None),
    ("  _evict (revision-horizon scan of the whole state)", r"^PartitionProcessor\._evict ", None),
    ("StreamWorker.checkpoint", r"^StreamWorker\.checkpoint ", None),
    ("  PartitionProcessor.snapshot (np.savez, JSON)", r"^PartitionProcessor\.snapshot ", None),
    ("  StreamWorker._deliver (send, wait for acks)", r"^StreamWorker\._deliver ", None),
    ("faust: stream/channel/event machinery", r"\(faust/(streams|channels|events|agents)", r"^StreamWorker\."),
    ("faust: consumer/conductor/transport", r"\(faust/transport/", r"^StreamWorker\."),
    ("aiokafka consumer (fetch, decode records)", r"\(aiokafka/consumer/", None),
    ("aiokafka producer (send, batch building)", r"\(aiokafka/producer/", None),
    ("bench: timing and latency bookkeeping", r"Timed\.(handle|checkpoint) ",
     r"^StreamWorker\.(handle|checkpoint) "),
    ("bench: lag sampler (kafka-python end_offsets)", r"\(kafka/", None),
]


#: (label, frame pattern): each sample counted once, in the first category one of its frames matches
EXCLUSIVE = [
    ("our processing: PartitionProcessor.process", r"^PartitionProcessor\.process "),
    ("our checkpoint: snapshot(), sends, acks", r"^StreamWorker\.checkpoint |^PartitionProcessor\.snapshot "),
    ("our handle() around process: Message objects, headers, outputs", r"^StreamWorker\.(handle|_emit|_deliver) "),
    ("bench bookkeeping and lag sampler", r"^realtime|^timed_worker|\(kafka/"),
    ("aiokafka consumer: fetch, decode records", r"\(aiokafka/consumer/"),
    ("aiokafka producer and network", r"\(aiokafka/"),
    ("faust: per-event dispatch, streams, acks, timers", r"\((faust|mode)/"),
    ("asyncio event loop (callbacks, select) not attributed above", r"\(asyncio/|\(selectors\.py"),
]


def thread_of(frames: list[str]) -> str:
    text = ";".join(frames)
    if "_WorkItem.run" in text:
        return "asyncio.to_thread pool (process, snapshot)"
    if "ServiceThread" in text or "WorkerThread" in text:
        return "faust consumer thread (aiokafka fetch loop)"
    if frames and frames[0].startswith("<module>"):
        return "main thread (event loop: faust agent, producer)"
    return "other: " + (frames[0][:50] if frames else "?")


def summarise(path: str) -> None:
    stacks: Counter[str] = Counter()  # collapsed stack -> samples
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if stack:
                stacks[stack] += int(count)
    total = sum(stacks.values())
    print(f"{path}: {total:,} samples")
    threads: Counter[str] = Counter()
    for stack, n in stacks.items():
        threads[thread_of(stack.split(";"))] += n
    for name, n in threads.most_common():
        print(f"  {n / total:6.1%}  thread: {name}")
    print("inclusive (the function or anything it called):")
    for label, pattern, exclude in INCLUSIVE:
        rx, ex = re.compile(pattern), re.compile(exclude) if exclude else None
        n = 0
        for stack, c in stacks.items():
            frames = stack.split(";")
            if any(rx.search(f) for f in frames) and not (ex and any(ex.search(f) for f in frames)):
                n += c
        print(f"  {n / total:6.1%}  {label}")
    print("exclusive (each sample once, first match in this order):")
    share: Counter[str] = Counter()
    for stack, n in stacks.items():
        frames = stack.split(";")
        share[next((label for label, pattern in EXCLUSIVE if any(re.search(pattern, f) for f in frames)),
                   "other")] += n
    for label, _ in EXCLUSIVE + [("other", None)]:
        print(f"  {share[label] / total:6.1%}  {label}")
    self_time: Counter[str] = Counter()
    for stack, n in stacks.items():
        self_time[stack.rsplit(";", 1)[-1]] += n
    print("top self time (innermost Python frame):")
    for frame, n in self_time.most_common(25):
        print(f"  {n / total:6.1%}  {frame}")


if __name__ == "__main__":
    for p in sys.argv[1:]:
        summarise(p)
