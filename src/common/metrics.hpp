// Metrics of one process, exported as Prometheus text on the admin port's /metrics. A metric is a
// name, a help line, a type and a function that reads the current value (the components own their
// counters; the registry only reads them). No per-user label values.
#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace flare {

class Metrics {
public:
    enum class Type { kCounter, kGauge };

    // `labels` is a Prometheus label set without braces, e.g. role="push-server", or empty.
    void Add(std::string name, std::string help, Type type, std::function<double()> read, std::string labels = "") {
        std::lock_guard lock(mu_);
        metrics_.push_back(Metric{std::move(name), std::move(help), type, std::move(read), std::move(labels)});
    }

    // A family whose series come and go (e.g. one per configured hook): `render` returns its
    // Prometheus text, HELP and TYPE lines included.
    void AddRenderer(std::function<std::string()> render) {
        std::lock_guard lock(mu_);
        renderers_.push_back(std::move(render));
    }

    std::string Render() const {
        std::lock_guard lock(mu_);
        std::string out;
        for (const auto& r : renderers_) {
            out += r();
        }
        std::string last;
        for (const auto& m : metrics_) {
            if (m.name != last) {
                out += "# HELP " + m.name + " " + m.help + "\n# TYPE " + m.name +
                       (m.type == Type::kCounter ? " counter\n" : " gauge\n");
                last = m.name;
            }
            out += m.name;
            if (!m.labels.empty()) {
                out += "{" + m.labels + "}";
            }
            const double v = m.read();
            const auto as_int = static_cast<long long>(v);
            out += " " + (static_cast<double>(as_int) == v ? std::to_string(as_int) : std::to_string(v)) + "\n";
        }
        return out;
    }

private:
    struct Metric {
        std::string name, help;
        Type type;
        std::function<double()> read;
        std::string labels;
    };
    mutable std::mutex mu_;
    std::vector<Metric> metrics_;
    std::vector<std::function<std::string()>> renderers_;
};

}  // namespace flare
