"""An agent's 429, tried again on purpose: only when the CLI said how long to wait (retry-after), that
wait is within the agent's `retry.max_wait_s`, no other agent could take the step (a fallback is always
preferred), and the run is not being cancelled. At most `retry.attempts` tries in all, each retry
reported (a log line and a "retry" notice, see orchestrator/retries.py). The wait ends early on cancel.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from orchestrator.adapters.runner import AgentStepResult
from orchestrator.config import RetryPolicy
from orchestrator.retries import RetryNote, report_retry, short


def retryable_wait(result: AgentStepResult, policy: RetryPolicy) -> float | None:
    """How long to wait before trying a failed step again, or None when it is not to be retried."""
    summary = result.summary
    if result.success or summary.error_kind != "rate_limit" or summary.retry_after_s is None:
        return None
    return summary.retry_after_s if summary.retry_after_s <= policy.max_wait_s else None


def call_with_rate_limit_retries(
    call: Callable[[], AgentStepResult],
    *,
    policy: RetryPolicy,
    others_ready: Callable[[], bool],
    cancel: threading.Event,
    failed: Callable[[AgentStepResult], None],
    label: str,
) -> AgentStepResult:
    """`call()`, again after each rate limit that may be retried; `failed` gets each result given up
    on (so its usage is still counted). The last result is returned whatever it is."""
    first = call()
    if policy.attempts <= 1 or retryable_wait(first, policy) is None:
        return first  # the usual case: tenacity is imported only when a try is to be repeated
    import tenacity

    def should_retry(state: tenacity.RetryCallState) -> bool:
        if state.outcome is None or state.outcome.failed:
            return False
        result: AgentStepResult = state.outcome.result()
        return retryable_wait(result, policy) is not None and not cancel.is_set() and not others_ready()

    def wait(state: tenacity.RetryCallState) -> float:
        assert state.outcome is not None
        return retryable_wait(state.outcome.result(), policy) or 0.0

    def before_sleep(state: tenacity.RetryCallState) -> None:
        assert state.outcome is not None and state.next_action is not None
        result: AgentStepResult = state.outcome.result()
        failed(result)
        message = result.summary.error_message or "rate limited"
        report_retry(
            RetryNote(
                "rate_limit",
                state.attempt_number,
                policy.attempts,
                state.next_action.sleep,
                short(f"{label}: {message}"),
            )
        )

    retrying = tenacity.Retrying(
        retry=should_retry,
        stop=tenacity.stop_after_attempt(policy.attempts),
        wait=wait,
        sleep=lambda seconds: None if cancel.wait(seconds) else None,  # a cancel ends the wait at once
        before_sleep=before_sleep,
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        reraise=True,
    )
    last: list[AgentStepResult] = [first]
    tries = iter([first])  # the first try, already made, is tenacity's attempt 1

    def attempt() -> AgentStepResult:
        made = next(tries, None)
        if made is not None:
            return made
        if cancel.is_set() and last:
            return last[-1]  # cancelled while waiting: no new try
        last.append(call())
        return last[-1]

    result: AgentStepResult = retrying(attempt)
    return result
