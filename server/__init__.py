"""Taskbell: live process-task notifications for business-process engines."""
