# Every target runs the same task in tasks.py, which needs only Python 3.11.
.PHONY: install demo test run lint bench screenshots
install demo test run lint bench screenshots:
	python3 tasks.py $@
