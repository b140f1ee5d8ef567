"""MLflow's system metrics in training runs: sampled while the run is open, closed with a last
sample when it ends (finished or failed), and never in the way of the training. The
`system/*` metrics of a real, finished tiny training are checked in tests/test_score.py."""

from __future__ import annotations

import dataclasses
import threading

import pytest


def _monitor_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "SystemMetricsMonitor" and t.is_alive()]


def test_a_failed_training_is_marked_failed_with_the_reason_and_stops_its_monitor(
        in_tmp, tiny_params, monkeypatch):
    from ganlab.stages import train as tr
    from ganlab.stages.prepare import run_prepare
    from ganlab.tracking import runs as tracking

    run_prepare(tiny_params)
    params = dataclasses.replace(tiny_params, monitor=dataclasses.replace(tiny_params.monitor, every=0))
    seen = {}

    def diverge(trainer, state):
        seen["monitors"] = list(tracking._system_monitors)
        seen["threads"] = len(_monitor_threads())
        raise FloatingPointError("d_loss is nan at epoch 0")

    monkeypatch.setattr(tr, "timed_epoch", diverge)
    with pytest.raises(FloatingPointError):
        tr.run_train(params, "gan", echo=lambda *_: None)
    c, exp_id = tracking.client()
    (run,) = c.search_runs([exp_id])
    assert seen == {"monitors": [run.info.run_id], "threads": 1}  # it sampled while training ran
    assert run.info.status == "FAILED"
    assert run.data.tags["ganlab.failure"] == "FloatingPointError: d_loss is nan at epoch 0"
    assert tracking._system_monitors == {} and _monitor_threads() == []  # stopped with the run
    assert c.get_metric_history(run.info.run_id, "system/cpu_utilization_percentage")
    assert c.get_metric_history(run.info.run_id, "system/system_memory_usage_megabytes")


def test_a_short_run_gets_a_closing_sample_and_a_reopened_run_continues(in_tmp, monkeypatch):
    from ganlab.tracking import runs as tracking

    monkeypatch.setattr(tracking, "SYSTEM_METRICS_INTERVAL", 60.0)  # no sample of its own
    run_id = tracking.start_run("x", {}, {"mlflow.runName": "x"})
    tracking.start_system_metrics(run_id)
    tracking.start_system_metrics(run_id)  # one monitor per run
    assert len(_monitor_threads()) == 1
    tracking.set_terminated(run_id)
    assert _monitor_threads() == []
    c, _ = tracking.client()
    key = "system/system_memory_usage_megabytes"
    steps = [m.step for m in c.get_metric_history(run_id, key)]
    assert steps == [0, 1]  # the first sample and the closing one
    tracking.reopen(run_id)
    tracking.start_system_metrics(run_id)
    tracking.set_terminated(run_id)
    assert sorted(m.step for m in c.get_metric_history(run_id, key)) == [0, 1, 2, 3]


def test_a_monitor_that_cannot_start_only_warns(in_tmp, monkeypatch):
    import mlflow.system_metrics.system_metrics_monitor as smm

    from ganlab.tracking import runs as tracking

    def broken(*_a, **_k):
        raise RuntimeError("no psutil here")

    monkeypatch.setattr(smm, "SystemMetricsMonitor", broken)
    run_id = tracking.start_run("x", {}, {"mlflow.runName": "x"})
    with pytest.warns(UserWarning, match="system metrics are off for run .*no psutil here"):
        tracking.start_system_metrics(run_id)
    tracking.set_terminated(run_id)
    c, _ = tracking.client()
    assert c.get_run(run_id).info.status == "FINISHED"
