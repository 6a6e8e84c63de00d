"""The simulators' state store: snapshots (deep copies that share only what cannot change) and
the explorer's in-memory state files."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from drengine.machine import ScratchDisk
from drengine.simstate import load_state, save_state, snapshot, state_exists


class Colour(str, Enum):
    RED = "red"


class Stamp(BaseModel):
    model_config = ConfigDict(frozen=True)
    text: str
    seq: int | None = None
    colour: Colour = Colour.RED


class FrozenWithList(BaseModel):
    model_config = ConfigDict(frozen=True)
    items: list[int]


class Node(BaseModel):
    name: str
    stamps: list[Stamp] = []
    tags: dict[str, list[str]] = {}
    held: FrozenWithList = FrozenWithList(items=[])
    pair: tuple[int, int] = (0, 0)


class World(BaseModel):
    nodes: list[Node]


def _world() -> World:
    return World(nodes=[Node(name="a", stamps=[Stamp(text="0-1-1")], tags={"k": ["x"]},
                             held=FrozenWithList(items=[1, 2]), pair=(1, 2))])


def test_a_snapshot_is_equal_and_shares_only_what_cannot_change() -> None:
    world = _world()
    copy = snapshot(world)
    assert copy == world and copy is not world
    node, original = copy.nodes[0], world.nodes[0]
    assert node is not original and node.stamps is not original.stamps and node.tags["k"] is not original.tags["k"]
    assert node.stamps[0] is original.stamps[0]  # frozen, scalar and enum fields only: shared
    assert node.held is not original.held and node.held.items is not original.held.items  # frozen, but holds a list
    node.stamps.append(Stamp(text="0-1-2"))
    node.tags["k"].append("y")
    node.held.items.append(3)
    node.name = "b"
    assert world == _world()  # the original did not move


def test_a_snapshot_keeps_which_fields_were_set() -> None:
    node = Node(name="a")
    assert snapshot(node).model_fields_set == {"name"}
    assert snapshot(node).model_dump_json(exclude_unset=True) == node.model_dump_json(exclude_unset=True)


def test_a_scratch_disk_keeps_state_files_in_memory_and_loads_a_copy_of_the_model_last_saved(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    state_file.write_text("not read: the scratch disk holds its own state files")
    disk = ScratchDisk()
    assert not state_exists(state_file, disk)
    live = _world()
    save_state(live, state_file, disk)
    assert state_file.read_text().startswith("not read")  # kept in memory, not written
    assert state_exists(state_file, disk)
    loaded = load_state(state_file, World, "test", disk)
    assert loaded == live and loaded is not live
    loaded.nodes[0].name = "changed"
    assert live.nodes[0].name == "a"
    # A loader that parses text gets the model's JSON.
    assert load_state(state_file, lambda text: text, "test", disk) == live.model_dump_json()
    # The same calls on the real disk (the default) write the file, atomically.
    save_state(live, state_file)
    assert World.model_validate_json(state_file.read_text()) == _world()
    assert load_state(state_file, World, "test") == live
