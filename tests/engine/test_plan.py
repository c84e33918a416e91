from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.engine.plan import (
    Plan,
    PlanInvalid,
    Serialization,
    Subtask,
    find_cycle,
    normalise_path,
    parse_plan,
    plan_format_instructions,
    schedule_plan,
    validate_plan,
)


def answer(subtasks, prose="Here is the plan.") -> str:
    return f"{prose}\n```json\n{json.dumps({'subtasks': subtasks}, indent=2)}\n```\n"


def sub(id, deps=(), files=(), prompt=None):
    return {"id": id, "prompt": prompt or f"do {id}", "depends_on": list(deps), "files": list(files)}


def problems_of(text_or_raw, max_subtasks=6) -> list[str]:
    with pytest.raises(PlanInvalid) as caught:
        if isinstance(text_or_raw, str):
            parse_plan(text_or_raw, max_subtasks=max_subtasks)
        else:
            validate_plan(text_or_raw, max_subtasks=max_subtasks)
    return [p.render() for p in caught.value.problems]


# --- reading -------------------------------------------------------------------------------------


def test_a_plan_in_prose_and_a_fence_is_read_with_defaults_and_normalised_paths():
    text = answer(
        [
            {"id": "api", "prompt": "  Add the endpoint  ", "files": ["./src//api.py"]},
            {"id": 2, "prompt": "Test it", "depends_on": "api"},
        ]
    )
    plan = parse_plan(text)
    assert plan == Plan(
        (
            Subtask("api", "Add the endpoint", (), ("src/api.py",)),
            Subtask("2", "Test it", ("api",), ()),
        )
    )
    assert plan.size == 2 and plan.ids == ("api", "2") and plan.subtask("2").depends_on == ("api",)


def test_the_last_object_with_subtasks_wins_and_trailing_commas_are_fine():
    text = (
        'First idea: {"subtasks": [{"id": "old", "prompt": "x"}]}\n'
        'Better:\n{"subtasks": [{"id": "new", "prompt": "y", "depends_on": [],},],}\n'
        'Notes: {"confidence": "high"}'
    )
    assert parse_plan(text).ids == ("new",)


def test_no_plan_object_is_one_problem():
    assert problems_of("I think we should just do it.") == [
        'plan: no JSON object with "subtasks" was found at the end of the answer'
    ]
    assert problems_of('{"subtasks": "a, b"}') == ['plan: "subtasks" must be a list of subtask objects']


def test_every_problem_is_listed_not_only_the_first():
    raw = {
        "subtasks": [
            sub("a"),
            sub("a"),
            {"id": "b", "prompt": "   "},
            {"id": "has space", "prompt": "x"},
            {"prompt": "no id"},
            "just text",
            sub("c", deps=["zz"]),
            {"id": "d", "prompt": "x", "files": ["/etc/passwd"]},
            {"id": "e", "prompt": "x", "depends_on": {"a": 1}},
        ]
    }
    problems = problems_of(raw, max_subtasks=8)
    assert problems == [
        "plan: the plan has 9 subtasks; at most 8 are allowed",
        "subtasks[1] (id 'a'): duplicate id (subtasks[0] has it too)",
        "subtasks[2] (id 'b'): the prompt is empty: say what the agent should do",
        "subtasks[3]: the id 'has space' is not allowed (1-40 letters, digits, '_' or '-', starting with a letter or digit)",
        "subtasks[4]: a subtask needs an id (1-40 letters, digits, '_' or '-', starting with a letter or digit)",
        "subtasks[5]: a subtask is an object with id, prompt, depends_on and files",
        "subtasks[6] (id 'c'): depends on 'zz', which is not an id of this plan (ids: a, b, c, d, e)",
        "subtasks[7] (id 'd'): '/etc/passwd' is not a path inside the repository (use a relative path)",
        "subtasks[8] (id 'e'): \"depends_on\" must be a list of subtask ids",
    ]


def test_too_many_and_no_subtasks():
    assert problems_of({"subtasks": [sub(str(i)) for i in range(7)]}) == [
        "plan: the plan has 7 subtasks; at most 6 are allowed"
    ]
    assert problems_of({"subtasks": []}) == ["plan: the plan has no subtasks"]
    assert validate_plan({"subtasks": [sub(str(i)) for i in range(6)]}).size == 6


def test_a_cycle_is_named():
    raw = {"subtasks": [sub("a", deps=["c"]), sub("b", deps=["a"]), sub("c", deps=["b"]), sub("d")]}
    assert problems_of(raw) == ["plan: the dependencies form a cycle: a -> c -> b -> a"]
    assert problems_of({"subtasks": [sub("self", deps=["self"])]}) == [
        "plan: the dependencies form a cycle: self -> self"
    ]


def test_find_cycle_is_none_for_a_dag_and_finds_a_cycle_behind_a_dag_part():
    assert find_cycle({"a": [], "b": ["a"], "c": ["a", "b"]}) is None
    assert find_cycle({"a": [], "b": ["a", "c"], "c": ["d"], "d": ["b"]}) == ["b", "c", "d", "b"]


@pytest.mark.parametrize(
    ("path", "normal"),
    [
        ("src/a.py", "src/a.py"),
        ("./src/../src/a.py", "src/a.py"),
        ("src\\win.py", "src/win.py"),
        ("../outside.py", None),
        ("a/../../b", None),
        ("/abs", None),
        ("C:/x", None),
        (".", None),
    ],
)
def test_paths_are_normalised_and_must_stay_inside(path, normal):
    assert normalise_path(path) == normal


def test_the_repair_prompt_lists_the_problems_and_the_format():
    with pytest.raises(PlanInvalid) as caught:
        parse_plan(answer([sub("a", deps=["b"]), sub("b", deps=["a"])]), max_subtasks=4)
    prompt = caught.value.repair_prompt()
    assert prompt.startswith(
        "Your plan could not be used:\n- plan: the dependencies form a cycle: a -> b -> a\n"
    )
    assert "At most 4 subtasks" in prompt and '"depends_on"' in prompt
    assert caught.value.exit_code == 1 and "one repair round" in str(caught.value)
    assert "{max_subtasks}" not in plan_format_instructions(3)


# --- scheduling --------------------------------------------------------------------------------


def plan_of(*subtasks) -> Plan:
    return validate_plan({"subtasks": list(subtasks)}, max_subtasks=20)


def test_independent_subtasks_form_one_batch():
    schedule = schedule_plan(plan_of(sub("a"), sub("b"), sub("c")))
    assert schedule.batches == (("a", "b", "c"),)
    assert schedule.serialized == ()
    assert schedule.ready(done=()) == ("a", "b", "c")


def test_a_diamond_is_three_batches_and_ready_follows_what_is_done():
    schedule = schedule_plan(
        plan_of(sub("d", deps=["b", "c"]), sub("b", deps=["a"]), sub("c", deps=["a"]), sub("a"))
    )
    assert schedule.batches == (("a",), ("b", "c"), ("d",))
    assert schedule.order == ("a", "b", "c", "d")
    assert schedule.ready(done=()) == ("a",)
    assert schedule.ready(done={"a"}) == ("b", "c")
    assert schedule.ready(done={"a"}, started={"b"}) == ("c",)
    assert schedule.ready(done={"a", "b"}, started={"c"}) == ()
    assert schedule.ready(done={"a", "b", "c"}) == ("d",)
    assert schedule.waits_for["d"] == ("b", "c")  # plan order


def test_subtasks_sharing_a_file_without_an_order_run_one_after_the_other_in_plan_order():
    schedule = schedule_plan(
        plan_of(sub("x", files=["a.py", "b.py"]), sub("y", files=["c.py"]), sub("z", files=["b.py"]))
    )
    assert schedule.serialized == (Serialization("x", "z", ("b.py",)),)
    assert schedule.batches == (("x", "y"), ("z",))
    assert schedule.waits_for == {"x": (), "y": (), "z": ("x",)}


def test_no_serialization_when_dependencies_already_order_them_either_way():
    # z depends on x through y: already ordered, nothing added
    schedule = schedule_plan(
        plan_of(sub("x", files=["f"]), sub("y", deps=["x"]), sub("z", deps=["y"], files=["f"]))
    )
    assert schedule.serialized == ()
    # the later subtask in plan order is the one depended on: the dependency order stands
    schedule = schedule_plan(plan_of(sub("p", deps=["q"], files=["f"]), sub("q", files=["f"])))
    assert schedule.serialized == () and schedule.batches == (("q",), ("p",))


def test_serialization_never_creates_a_cycle_with_reverse_dependencies():
    # c -> a (a waits for c). a and b share f1, b and c share f2. Plan order a, b, c.
    # a,b unordered: b waits for a. Then b,c: b waits for a waits for c: already ordered.
    schedule = schedule_plan(
        plan_of(sub("a", deps=["c"], files=["f1"]), sub("b", files=["f1", "f2"]), sub("c", files=["f2"]))
    )
    assert schedule.serialized == (Serialization("a", "b", ("f1",)),)
    assert schedule.order == ("c", "a", "b")
    assert find_cycle(dict(schedule.waits_for)) is None


def test_three_subtasks_on_one_file_form_a_chain():
    schedule = schedule_plan(plan_of(sub("a", files=["f"]), sub("b", files=["f"]), sub("c", files=["f"])))
    assert schedule.batches == (("a",), ("b",), ("c",))
    # b waits for a; c is ordered after a through b, so only b is added for c
    assert schedule.serialized == (Serialization("a", "b", ("f",)), Serialization("b", "c", ("f",)))


@st.composite
def random_plans(draw):
    count = draw(st.integers(1, 9))
    ids = [f"t{i}" for i in range(count)]
    order = draw(st.permutations(ids))  # a hidden topological order keeps the dependencies acyclic
    subtasks = []
    for position, subtask_id in enumerate(order):
        earlier = list(order[:position])
        deps = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=3)) if earlier else []
        files = draw(st.lists(st.sampled_from(["a", "b", "c", "d"]), unique=True, max_size=2))
        subtasks.append(sub(subtask_id, deps=deps, files=files))
    shuffled = draw(st.permutations(subtasks))  # the plan lists them in any order
    return plan_of(*shuffled)


@settings(max_examples=300, deadline=None)
@given(random_plans())
def test_schedules_respect_dependencies_and_never_run_two_subtasks_on_one_file_at_once(plan):
    schedule = schedule_plan(plan)
    assert sorted(schedule.order) == sorted(plan.ids)
    batch_of = {s: k for k, batch in enumerate(schedule.batches) for s in batch}
    for subtask in plan.subtasks:
        for dependency in subtask.depends_on:
            assert batch_of[dependency] < batch_of[subtask.id]
        for waited in schedule.waits_for[subtask.id]:
            assert batch_of[waited] < batch_of[subtask.id]
    for batch in schedule.batches:
        for i, a in enumerate(batch):
            for b in batch[i + 1 :]:
                assert not set(plan.subtask(a).files) & set(plan.subtask(b).files), (a, b)
    # Running with `ready` until done visits everything, once, with no file clash among the running.
    done: list[str] = []
    while len(done) < plan.size:
        wave = schedule.ready(done=done)
        assert wave, "stuck: nothing ready"
        files = [f for s in wave for f in plan.subtask(s).files]
        assert len(files) == len(set(files)), wave
        done.extend(wave)
    assert sorted(done) == sorted(plan.ids)
    assert schedule_plan(plan) == schedule  # deterministic
