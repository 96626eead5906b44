"""What starts runs besides an API call: events, verified webhooks, cron schedules."""
