package awssim

import "net/http"

// ec2State holds the simulated ec2 resources. Guarded by Server.mu.
type ec2State struct{}

func (st *ec2State) init(s *Server) {}

func (s *Server) serveEC2(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }
