"""The registry service's revisions, in order: 0001 is the schema create_all made before migrations."""
