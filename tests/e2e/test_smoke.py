import json

from tests.conftest import Cli


def test_import_enroll_status_round_trip(cli: Cli) -> None:
    result = cli("leads", "import", "leads.csv", "--json")
    assert result.exit_code == 1, result.output  # four rows are bad on purpose: rejected, the good rows still in
    report = json.loads(result.stdout)
    assert report["imported"] == 8
    assert [r["row"] for r in report["rejected"]] == [10, 11, 12, 13]
    result = cli("enroll", "outbound-saas", "L1", "L2", "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["enrolled"]) == 2
    status = json.loads(cli("status", "L1", "--json").stdout)
    assert status["lead"]["stage"] == "working"
    assert status["enrollments"][0]["sequence"] == "outbound-saas"
    assert status["enrollments"][0]["next_step"] == "intro"
    assert status["touches"][0]["status"] == "scheduled"
