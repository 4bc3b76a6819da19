"""MemoryFiles (`--memory`) against DiskFiles on a real directory: the same random sequence of
directory and file operations leaves both with the same tree, listing for listing, so the
memory store's directory index (what keeps listing a directory from scanning every file of the
broker) stays what the file system would say."""

import random

import pytest

from trioka.log.files import DiskFiles, MemoryFiles

NAMES = ["t-0", "t-1", "u-0", "00000000000000000000.log", "leader-epoch-checkpoint",
         "t-0.abc-delete", "x"]


def tree(files, path: str = "") -> dict:
    """{name: subtree, or the file's bytes} under `path`."""
    out = {}
    for name in files.listdir(path):
        child = f"{path}/{name}" if path else name
        out[name] = tree(files, child) if files.is_dir(child) else files.read_small(child)
    return out


def step(files, rng: random.Random, dirs: list[str], paths: list[str]):
    """One operation, the same on either store; its outcome (or the error's type)."""
    kind = rng.choice(["mkdir", "mkdir", "write", "write", "atomic", "rename_file",
                       "rename_dir", "remove", "remove_tree"])
    parent = rng.choice(dirs)
    path = f"{parent}/{rng.choice(NAMES)}" if parent else rng.choice(NAMES)
    try:
        if kind == "mkdir":
            if files.exists(path) and not files.is_dir(path):
                return "skip"
            files.mkdir(path)
        elif kind == "write":
            if files.is_dir(path):
                return "skip"
            f = files.open(path)
            f.append(b"w" * rng.randint(0, 5))
            f.close()
        elif kind == "atomic":
            if files.is_dir(path):
                return "skip"
            files.write_atomic(path, b"a" * rng.randint(0, 5))
        elif kind in ("rename_file", "rename_dir"):
            source = rng.choice(paths)
            if not source or not files.exists(source) or files.exists(path) or \
                    path == source or path.startswith(source + "/"):
                return "skip"
            if (kind == "rename_dir") != files.is_dir(source):
                return "skip"
            files.rename(source, path)
        elif kind == "remove":
            if files.is_dir(path) or not files.exists(path):
                return "skip"
            files.remove(path)
        else:
            source = rng.choice(paths)
            if not source or not files.is_dir(source):
                return "skip"
            files.remove_tree(source)
    except OSError as e:
        return type(e).__name__
    return kind


@pytest.mark.parametrize("seed", range(8))
def test_memory_files_keep_the_tree_disk_files_keep(tmp_path, seed):
    disk, memory = DiskFiles(str(tmp_path / "d")), MemoryFiles()
    rng_disk, rng_memory = random.Random(seed), random.Random(seed)
    dirs = [""]
    for _ in range(300):
        paths = dirs + [f"{d}/{n}" if d else n for d in dirs for n in NAMES]
        a = step(disk, rng_disk, dirs, paths)
        b = step(memory, rng_memory, dirs, paths)
        assert a == b
        for store in (disk, memory):
            assert sorted(store.listdir("")) == sorted(memory.listdir(""))
        # The directories both know of, for the next steps to aim at.
        dirs = sorted({""} | {p for p in paths if disk.is_dir(p)})
    shape = tree(disk)
    assert tree(memory) == shape


def test_listing_a_directory_costs_its_entries_not_the_store():
    memory = MemoryFiles()
    for p in range(2000):
        memory.mkdir(f"t-{p}")
        memory.open(f"t-{p}/00000000000000000000.log").close()
    assert memory.listdir("t-7") == ["00000000000000000000.log"]
    assert len(memory.listdir("")) == 2000
    memory.rename("t-7", "t-7.abc-delete")
    assert memory.listdir("t-7.abc-delete") == ["00000000000000000000.log"]
    memory.remove_tree("t-7.abc-delete")
    assert "t-7.abc-delete" not in memory.listdir("") and len(memory.listdir("")) == 1999
    assert not memory.exists("t-7.abc-delete/00000000000000000000.log")
