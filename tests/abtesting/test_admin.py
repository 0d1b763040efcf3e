"""The experiment admin shows a multi-arm test's arms and winner, read-only."""

from __future__ import annotations


def test_the_admin_shows_every_arm_and_the_winner_read_only(client, django_user_model, three_arm_winner):
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "x"))
    listing = client.get("/admin/abtesting/experiment/").content.decode()
    assert "shop-v3" in listing and "variant_better" in listing  # the winner column
    page = client.get(f"/admin/abtesting/experiment/{three_arm_winner.pk}/change/").content.decode()
    assert "variant2" in page and "shop-v3" in page  # the further variant's inline row
    # Nothing to edit: no inputs for the arms, no way to add or delete one.
    assert 'name="extra_variants-0-version"' not in page and 'id="extra_variants-empty"' not in page
    assert 'name="winner"' not in page
