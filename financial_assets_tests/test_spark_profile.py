"""bench.spark_profile: Spark's event log read back as one line per SQL execution."""

import json

from bench.spark_profile import event_log_config, executions, read_events, table


def write_log(directory, events) -> None:
    """A rolling event log as Spark 4 writes it: a folder per application, numbered parts."""
    folder = directory / "eventlog_v2_local-1"
    folder.mkdir(parents=True)
    (folder / "appstatus_local-1").write_text("")
    (folder / "events_1_local-1").write_text("\n".join(json.dumps(event) for event in events) + "\n")


def execution(id, start_ms, end_ms, description):
    return [
        {"Event": "org.apache.spark.sql.execution.ui.SparkListenerSQLExecutionStart", "executionId": id,
         "time": start_ms, "description": description},
        {"Event": "org.apache.spark.sql.execution.ui.SparkListenerSQLExecutionEnd", "executionId": id, "time": end_ms},
    ]


def job(job_id, execution_id, stages):
    return {"Event": "SparkListenerJobStart", "Job ID": job_id, "Stage IDs": stages,
            "Properties": {"spark.sql.execution.id": str(execution_id)}}


def stage(stage_id, tasks, cpu_ns, input_bytes=0, shuffle_bytes=0):
    return {"Event": "SparkListenerStageCompleted", "Stage Info": {
        "Stage ID": stage_id, "Number of Tasks": tasks,
        "Accumulables": [{"Name": "internal.metrics.executorCpuTime", "Value": cpu_ns},
                         {"Name": "internal.metrics.input.bytesRead", "Value": input_bytes},
                         # Spark logs some accumulables' values as strings.
                         {"Name": "internal.metrics.shuffle.write.bytesWritten", "Value": str(shuffle_bytes)}]}}


EVENTS = [
    *execution(1, 10_000, 14_000, "overwrite at NativeMethodAccessorImpl.java:0"),
    job(0, 1, [0, 1, 9]), stage(0, 2, 3_000_000_000, input_bytes=8_000_000, shuffle_bytes=2_500_000),
    stage(1, 3, 1_500_000_000),  # stage 9 was skipped: it never completes
    *execution(2, 15_000, 15_500, "collect at star_checks.py:283"),
    job(1, 2, [2]), stage(2, 4, 500_000_000),
    *execution(3, 16_000, 16_100, "a plan Spark answered without a job"),
]


def test_each_execution_with_a_job_is_a_line_with_its_jobs_tasks_and_cpu(tmp_path):
    write_log(tmp_path, EVENTS)

    found = executions(read_events(tmp_path))

    assert [(e.id, e.seconds, e.jobs, e.tasks, e.cpu_seconds) for e in found] == [(1, 4.0, 1, 5, 4.5), (2, 0.5, 1, 4, 0.5)]


def test_each_execution_counts_its_completed_stages_and_the_megabytes_it_read_and_shuffled(tmp_path):
    write_log(tmp_path, EVENTS)

    first = executions(read_events(tmp_path))[0]

    assert (first.stages, first.input_mb, first.shuffle_mb) == (2, 8.0, 2.5)


def test_only_the_executions_started_in_the_window_are_kept(tmp_path):
    write_log(tmp_path, EVENTS)

    assert [e.id for e in executions(read_events(tmp_path), since=14.5, until=20)] == [2]


def test_the_table_says_how_much_of_the_wall_time_spark_executions_took(tmp_path):
    write_log(tmp_path, EVENTS)

    text = table(executions(read_events(tmp_path)), since=10.0, until=16.0)

    assert text.splitlines()[0].startswith("6.0 s wall, 4.5 s in 2 Spark executions (2 jobs)")
    assert "collect at star_checks.py:283" in text


def test_the_session_settings_write_an_uncompressed_log_into_the_directory(tmp_path):
    config = event_log_config(tmp_path)

    assert config["spark.eventLog.enabled"] == "true" and config["spark.eventLog.compress"] == "false"
    assert config["spark.eventLog.dir"] == tmp_path.resolve().as_uri()
