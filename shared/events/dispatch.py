"""Dispatch's public events: orders, activities, shifts, attendance, service records.

None yet: the skeleton's dispatch only keeps a local view of volunteers (issue 4 adds these).
"""
