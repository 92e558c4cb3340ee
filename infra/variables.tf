# The values hubbot cross-checks against deployments/*/hubploy.yaml, .sops.yaml
# and hub/values.yaml (see bot/infra.py) are plain literals here or in
# example.tfvars, never expressions, so they can be read without terraform.

variable "account_id" {
  description = "The AWS account the platform lives in (the provider refuses any other)."
  type        = string
}

variable "region" {
  description = "AWS region of the cluster, registry, file system and keys."
  type        = string
  default     = "us-east-1"
}

variable "cluster_name" {
  description = "EKS cluster name; also the cluster autoscaler's auto-discovery tag."
  type        = string
  default     = "tess"
}

variable "kubernetes_version" {
  description = "EKS Kubernetes version (upgrade deliberately, one minor version at a time)."
  type        = string
  default     = "1.35"
}

variable "vpc_cidr" {
  description = "Address range of the VPC; subnets are carved out of it."
  type        = string
  default     = "10.42.0.0/16"
}

variable "availability_zones" {
  description = "The availability zones (names, in var.region) that get a private and a public subnet: at least 2. A closed list, so a zone AWS adds later never moves or adds subnets."
  type        = list(string)
  default     = ["us-east-1a", "us-east-1b"]

  validation {
    condition     = length(distinct(var.availability_zones)) >= 2
    error_message = "EKS needs subnets in at least two different availability zones."
  }

  validation {
    condition     = alltrue([for zone in var.availability_zones : startswith(zone, var.region)])
    error_message = "Every availability zone must be in var.region."
  }
}

variable "public_access_cidrs" {
  description = "Who may reach the EKS API endpoint (GitHub-hosted runners deploy through it)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "core_instance_types" {
  description = "Instance types of the core node groups (hub, proxy, autoscaler)."
  type        = list(string)
  default     = ["m6i.large"]
}

variable "core_size_per_zone" {
  description = "Size of each zone's core node group (one group per availability zone); the cluster has this many times the number of zones. min is at least 1: every zone, and so every hub database's EBS volume, keeps a core node."
  type        = object({ min = number, desired = number, max = number })
  default     = { min = 1, desired = 1, max = 2 }

  validation {
    condition     = var.core_size_per_zone.min >= 1
    error_message = "core_size_per_zone.min must be at least 1, or a zone can lose its last core node and the hub whose volume is there stays Pending."
  }

  validation {
    condition     = var.core_size_per_zone.min <= var.core_size_per_zone.desired && var.core_size_per_zone.desired <= var.core_size_per_zone.max
    error_message = "core_size_per_zone needs min <= desired <= max."
  }
}

variable "user_instance_types" {
  description = "Instance types of the user node group (user servers only)."
  type        = list(string)
  default     = ["r6i.xlarge"]
}

variable "user_size" {
  description = "User node group size: a small minimum, the autoscaler adds nodes on demand."
  type        = object({ min = number, desired = number, max = number })
  default     = { min = 1, desired = 1, max = 20 }
}

variable "ecr_repository" {
  description = "ECR repository of the user image (the `images[].name` in hubploy.yaml)."
  type        = string
  default     = "tess-user-image"
}

variable "ecr_keep_images" {
  description = "How many of the most recent tagged user images the lifecycle policy keeps."
  type        = number
  default     = 100
}

variable "github_repository" {
  description = "owner/name of this repository on GitHub; the CI roles trust only it."
  type        = string
}

variable "environments" {
  description = <<-EOT
    One entry per environment: the branch that deploys it (and the GitHub
    environment of the deploy job), the CI role's name, the alias of its sops
    KMS key, and whether its CI may push the user image ("push") or only read it.
  EOT
  type = map(object({
    branch         = string
    ci_role_name   = string
    sops_key_alias = string
    ecr_access     = string
  }))
  default = {
    staging = {
      branch         = "staging"
      ci_role_name   = "tess-ci-staging"
      sops_key_alias = "alias/tess-sops-staging"
      ecr_access     = "push"
    }
    prod = {
      branch         = "prod"
      ci_role_name   = "tess-ci-prod"
      sops_key_alias = "alias/tess-sops-prod"
      ecr_access     = "read"
    }
  }

  validation {
    condition     = alltrue([for env in values(var.environments) : contains(["push", "read"], env.ecr_access)])
    error_message = "ecr_access is \"push\" or \"read\"."
  }
}

variable "admin_role_arn" {
  description = "IAM role of the platform administrators: cluster admin, and encrypt/decrypt with every sops key. Apply terraform as this role."
  type        = string
}

variable "hub_namespaces" {
  description = "Namespaces of the hub releases (hubploy.yaml environments) whose user pods may assume the data role."
  type        = list(string)
  default     = ["tess-public-staging", "tess-public-prod", "tess-private-staging", "tess-private-prod"]
}

variable "user_service_account" {
  description = "Kubernetes service account of user pods (hub/values.yaml userServiceAccount.name)."
  type        = string
  default     = "tess-user"
}

variable "user_role_name" {
  description = "IAM role (IRSA) of user pods: read-only access to data_buckets."
  type        = string
  default     = "tess-user-data-read"
}

variable "data_buckets" {
  description = "S3 buckets user pods may read (the TESS data)."
  type        = list(string)
  default     = ["stpubdata"]
}

variable "home_uid" {
  description = "POSIX user that owns home directories on EFS (z2jh singleuser.uid)."
  type        = number
  default     = 1000
}

variable "home_gid" {
  description = "POSIX group of home directories on EFS (z2jh singleuser.fsGid)."
  type        = number
  default     = 100
}

variable "cluster_autoscaler_chart_version" {
  description = "Version of the cluster-autoscaler helm chart (kubernetes/autoscaler)."
  type        = string
  default     = "9.59.0"
}

variable "cluster_autoscaler_image_tag" {
  description = "Cluster autoscaler image tag; its minor version follows kubernetes_version."
  type        = string
  default     = "v1.35.0"
}

variable "log_retention_days" {
  description = "Retention of the VPC flow logs and EKS control-plane logs."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = { project = "tess-hubs" }
}
