def test_the_schema_renders(client, db):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    assert b"/api/v1/feedback" in response.content
