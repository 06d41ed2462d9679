"""tvm_qnn.threads: TVM's thread pool gets one thread per physical core unless the user chose."""

from tvm_qnn import threads


def _topology(tmp_path, cores):
    """A fake sysfs: ``cores[cpu] = (package, core)``."""
    for cpu, (package, core) in enumerate(cores):
        base = tmp_path / f"cpu{cpu}" / "topology"
        base.mkdir(parents=True)
        (base / "physical_package_id").write_text(f"{package}\n")
        (base / "core_id").write_text(f"{core}\n")
    return tmp_path


def test_hyperthreads_of_one_core_count_once(tmp_path):
    topology = _topology(tmp_path, [(0, 0), (0, 1), (0, 0), (0, 1), (1, 0)])
    assert threads.physical_cores(range(5), topology) == 3
    assert threads.physical_cores([0, 2], topology) == 1


def test_cpus_without_topology_count_as_cores(tmp_path):
    assert threads.physical_cores([0, 1], tmp_path) == 2


def test_configure_sets_tvm_num_threads_only_when_the_user_did_not(monkeypatch):
    monkeypatch.setattr(threads, "physical_cores", lambda: 7)
    env = {}
    assert threads.configure(env) == 7 and env == {"TVM_NUM_THREADS": "7"}
    for user in ({"TVM_NUM_THREADS": "3"}, {"OMP_NUM_THREADS": "1"}):
        env = dict(user)
        assert threads.configure(env) is None and env == user
