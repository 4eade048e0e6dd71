"""bench.resource_use: what bounds a step, from the CPU each kind of process used during it."""

import subprocess
import sys
import time

from bench.resource_use import CpuSampler, _processes, bound_by

IDLE = {"pipeline": 0.0, "Spark": 0.0, "FerretDB": 0.0, "PostgreSQL": 0.0}


def test_a_step_that_kept_the_cores_busy_is_bound_by_cpu_and_names_who_used_it():
    assert bound_by(10.0, IDLE | {"Spark": 17.0, "pipeline": 1.0}, cores=2) == (
        "CPU (1.8 of 2 cores busy), most by Spark (Spark 1.7, pipeline 0.1)")


def test_a_step_where_the_document_store_worked_most_is_bound_by_the_store():
    assert bound_by(10.0, IDLE | {"FerretDB": 9.0, "pipeline": 3.0}, cores=2) == (
        "the document store (FerretDB 0.9, pipeline 0.3 of 2 cores)")


def test_a_step_in_which_little_ran_is_fixed_costs_and_waiting():
    assert bound_by(10.0, IDLE | {"Spark": 1.0}, cores=2) == "fixed costs and waiting (0.1 of 2 cores busy)"


def test_a_step_too_short_to_sample_gets_no_verdict():
    assert bound_by(0.5, IDLE | {"Spark": 1.0}, cores=2) == "-"


def test_the_sampler_counts_this_process_as_the_pipeline():
    with CpuSampler(interval_s=0.05) as sampler:
        since, started = time.time(), time.process_time()
        while time.process_time() - started < 0.6:  # CPU, not wall: the suite's other worker competes
            pass
        until = time.time()

    assert sampler.cpu_between(since, until)["pipeline"] >= 0.3


def test_the_sampler_counts_a_jvm_this_process_started_as_spark(tmp_path):
    java = tmp_path / "java"  # a busy child whose command name is what Spark's driver JVM has
    java.symlink_to(sys.executable)
    interval_s = 0.05
    with CpuSampler(interval_s=interval_s) as sampler:
        since = time.time()
        child = subprocess.Popen([str(java), "-c", "import time\nwhile time.process_time() < 30: pass"])
        try:
            # Until it has used 0.6 s of CPU, however long a loaded machine (the suite's other
            # worker) takes to give it that; measured while it runs, as an ended process takes its
            # total with it.
            deadline = time.monotonic() + 20
            while _processes().get(child.pid, ("", 0, 0.0))[2] < 0.6 and time.monotonic() < deadline:
                time.sleep(interval_s)
            until = time.time()
        finally:
            child.kill()
            child.wait()

    used = sampler.cpu_between(since, until)
    # At most the child's one core over the (widened) window: JVMs this process did not start
    # (another test worker's Spark) are not Spark's here.
    assert 0.5 <= used["Spark"] <= until - since + 2 * interval_s
