//! warren: queue-driven autoscaling for RabbitMQ workers.
