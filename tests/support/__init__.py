"""What the tests share: real servers, sample projects, workers and browsers to drive."""
