"""The committed gRPC modules are exactly what protoc makes of proto/ today."""
from service.tools import protogen


def test_generated_modules_are_up_to_date():
    fresh = protogen.generate()
    assert set(fresh) == set(protogen.GENERATED)
    for name, content in fresh.items():
        committed = (protogen.OUT_DIR / name).read_bytes()
        assert committed == content, (
            f"service/api/{name} is out of date with {protogen.PROTO_FILE}: run `make proto`")


def test_the_client_package_ships_the_same_modules():
    # clients/python vendors the modules (its wheel builds without grpcio-tools): a copy
    # that drifts from proto/ fails here, and two different copies in one process would
    # fail to import (the same .proto file name in protobuf's default pool)
    fresh = protogen.generate()
    for name, content in fresh.items():
        committed = (protogen.CLIENT_OUT_DIR / name).read_bytes()
        assert committed == content, (
            f"{protogen.CLIENT_OUT_DIR}/{name} is out of date with {protogen.PROTO_FILE}: "
            "run `make proto`")


def test_grpc_module_imports_messages_relatively():
    text = (protogen.OUT_DIR / "speakerswitch_pb2_grpc.py").read_text()
    assert "from . import speakerswitch_pb2" in text
    assert "from speakerswitch.v1" not in text


def test_check_mode_reports_stale(tmp_path, monkeypatch):
    monkeypatch.setattr(protogen, "OUT_DIR", tmp_path)
    monkeypatch.setattr(protogen, "CLIENT_OUT_DIR", tmp_path / "client")
    assert protogen.main(["--check"]) == 1          # nothing generated there yet
    assert protogen.main([]) == 0                   # generate
    assert protogen.main(["--check"]) == 0          # now current
    (tmp_path / "speakerswitch_pb2.py").write_text("# edited by hand\n")
    assert protogen.main(["--check"]) == 1
    assert protogen.main([]) == 0
    (tmp_path / "client" / "speakerswitch_pb2_grpc.py").write_text("# edited by hand\n")
    assert protogen.main(["--check"]) == 1
