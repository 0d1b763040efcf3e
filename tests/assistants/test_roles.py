def test_reviewer_may_approve_and_viewer_may_not(alice, bob):
    assert alice.has_perm("training.approve_trainingjob")
    assert alice.has_perm("feedback.curate_feedback")
    assert alice.has_perm("assistants.rollback_deployment")
    assert bob.has_perm("training.view_trainingjob")
    assert not bob.has_perm("training.approve_trainingjob")
    assert not bob.has_perm("feedback.curate_feedback")
